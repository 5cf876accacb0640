"""The network: inputs, architecture, loss, training and inference (book part "The network").

The only subpackage that imports Keras (and TensorFlow); imports :mod:`mrfbook.physics` and the
bottom layer, never :mod:`mrfbook.recon`. ``inputs`` needs no Keras.

- :mod:`mrfbook.nn.inputs` -- what the network sees: real, unit-norm signatures (chapter 7).
- :mod:`mrfbook.nn.network` -- the residual 1-D CNN of the paper and its configurations (chapter 6).
- :mod:`mrfbook.nn.losses` -- the RMSE loss and the per-parameter metric, registered with Keras (chapter 7).
- :mod:`mrfbook.nn.model` -- label scaling, the trained model and its ``.keras`` file (chapter 7).
- :mod:`mrfbook.nn.data` -- random tissues off the grid, splits, epoch order (chapter 7).
- :mod:`mrfbook.nn.training` -- training with checkpoints, logs and provenance (chapter 7).
- :mod:`mrfbook.nn.inference` -- applying a trained network to fingerprints and image stacks (chapter 7).
- :mod:`mrfbook.nn.runs` -- run folders and the networks shipped in ``models/`` (chapters 7 and 8).

Explained in chapter 6, book/06_network.md, and chapter 7, book/07_training.md.
"""

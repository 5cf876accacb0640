// Open any figure of the book at its natural size in an overlay (see readable_figures.py).
// Links of class "mrf-zoom" wrap every image; without JavaScript they open the image file.
(function () {
  "use strict";
  function close(overlay) {
    overlay.remove();
    document.body.classList.remove("mrf-zoom-open");
  }
  function open(src, alt) {
    const overlay = document.createElement("div");
    overlay.className = "mrf-zoom-overlay";
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-label", "Figure at full size (click or press Escape to close)");
    const img = document.createElement("img");
    img.src = src;
    img.alt = alt || "";
    overlay.appendChild(img);
    overlay.addEventListener("click", () => close(overlay));
    document.addEventListener("keydown", function onKey(event) {
      if (event.key === "Escape") { close(overlay); document.removeEventListener("keydown", onKey); }
    });
    document.body.appendChild(overlay);
    document.body.classList.add("mrf-zoom-open");
  }
  document.addEventListener("click", function (event) {
    const link = event.target.closest ? event.target.closest("a.mrf-zoom") : null;
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) { return; }
    const img = link.querySelector("img");
    if (!img) { return; }
    event.preventDefault();
    open(img.currentSrc || img.src, img.alt);
  });
})();

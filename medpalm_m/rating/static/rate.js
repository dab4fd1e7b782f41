// The rating page's small behaviours: keyboard navigation, the image viewer (zoom, pan,
// window/level) and the drag-or-select ranking, which saves itself on every change. Each works
// without the others; without JavaScript the forms still post and the image still shows.
"use strict";

function isTyping(target) {
  return target && target.closest && target.closest("input, textarea, select");
}

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey || isTyping(event.target)) return;
  const id = {ArrowRight: "next", n: "next", ArrowLeft: "previous", p: "previous"}[event.key];
  const link = id && document.getElementById(id);
  if (link && link.href) window.location.href = link.href;
});

function setUpViewer() {
  const canvas = document.getElementById("xray");
  if (!canvas) return;
  const box = document.getElementById("canvas-box");
  const zoom = document.getElementById("zoom");
  const level = document.getElementById("level");
  const windowWidth = document.getElementById("window");
  const context = canvas.getContext("2d", {willReadFrequently: true});
  let original = null;

  function draw() {
    if (!original) return;
    // Window/level: grey values in [level - window/2, level + window/2] span black to white.
    const low = Number(level.value) - Number(windowWidth.value) / 2;
    const lut = new Uint8ClampedArray(256);
    for (let v = 0; v < 256; v++) lut[v] = Math.round(((v - low) / Number(windowWidth.value)) * 255);
    const shown = new ImageData(new Uint8ClampedArray(original.data), original.width, original.height);
    const d = shown.data;
    for (let i = 0; i < d.length; i += 4) {
      d[i] = lut[d[i]]; d[i + 1] = lut[d[i + 1]]; d[i + 2] = lut[d[i + 2]];
    }
    context.putImageData(shown, 0, 0);
    const fit = Math.min(box.clientWidth / original.width, box.clientHeight / original.height);
    canvas.style.width = `${Math.floor(original.width * fit * Number(zoom.value))}px`;
  }

  function reset() {
    zoom.value = 1; level.value = 128; windowWidth.value = 256;
    draw();
  }

  const image = new Image();
  image.onload = () => {
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    context.drawImage(image, 0, 0);
    original = context.getImageData(0, 0, canvas.width, canvas.height);
    canvas.dataset.loaded = "true";
    draw();
  };
  image.src = canvas.dataset.src;
  [zoom, level, windowWidth].forEach((input) => input.addEventListener("input", draw));
  document.getElementById("reset-view").addEventListener("click", reset);
  canvas.addEventListener("dblclick", reset);
  window.addEventListener("resize", draw);

  let panFrom = null;
  box.addEventListener("mousedown", (event) => {
    panFrom = {x: event.clientX, y: event.clientY, left: box.scrollLeft, top: box.scrollTop};
    event.preventDefault();
  });
  window.addEventListener("mousemove", (event) => {
    if (!panFrom) return;
    box.scrollLeft = panFrom.left - (event.clientX - panFrom.x);
    box.scrollTop = panFrom.top - (event.clientY - panFrom.y);
  });
  window.addEventListener("mouseup", () => { panFrom = null; });
}

function setUpRanking() {
  const form = document.getElementById("ranking");
  if (!form) return;
  const list = document.getElementById("ranking-list");
  const status = document.getElementById("ranking-status");
  let dragged = null;

  function renumber() {
    Array.from(list.children).forEach((item, i) => { item.querySelector("select").value = String(i + 1); });
  }

  async function save() {
    status.textContent = "Saving...";
    try {
      const response = await fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: {"X-Requested-With": "fetch"},
      });
      const answer = await response.json();
      status.textContent = answer.saved ? "Saved." : `Not saved: ${answer.message}`;
    } catch (error) {
      status.textContent = "Not saved: the server did not answer. Press Save ranking to retry.";
    }
  }

  list.addEventListener("dragstart", (event) => {
    dragged = event.target.closest("li");
    dragged.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", dragged.dataset.letter);
  });
  list.addEventListener("dragend", () => { if (dragged) dragged.classList.remove("dragging"); dragged = null; });
  list.addEventListener("dragover", (event) => event.preventDefault());
  list.addEventListener("drop", (event) => {
    event.preventDefault();
    const target = event.target.closest("li");
    if (!dragged || !target || target === dragged) return;
    const items = Array.from(list.children);
    if (items.indexOf(dragged) < items.indexOf(target)) target.after(dragged); else target.before(dragged);
    renumber();
    save();
  });
  // Choosing rank r for a report moves it to place r; the others keep their order.
  list.addEventListener("change", (event) => {
    const item = event.target.closest("li");
    const items = Array.from(list.children).filter((other) => other !== item);
    items.splice(Number(event.target.value) - 1, 0, item);
    items.forEach((other) => list.appendChild(other));
    renumber();
    save();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpViewer();
  setUpRanking();
});

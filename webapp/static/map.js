/* labelaudit review app: the map of the data set.
 *
 * A zoomable scatter of every sample (a 2-D projection of the scan's embeddings) drawn on a
 * <canvas> by writing pixels into one ImageData: 100,000 points take a few milliseconds, so
 * zoom and pan redraw at once. Dots are coloured by given label; flagged samples are
 * ringed. Drag a box to select, Enter opens the selection in the grid (the ids go to the
 * server in a POST, the grid gets a short selection id); hovering shows the thumbnail.
 * Class names reach the DOM only through textContent.
 */
(() => {
  'use strict';

  const LA = window.labelaudit;
  const $ = (sel) => document.querySelector(sel);
  const canvas = $('#map');
  if (!LA || !canvas) return;
  const ctx = canvas.getContext('2d');
  const status = $('#map-status');
  const tip = $('#map-tip');
  const FLAGGED = 1, REVIEWED = 2;
  const MARGIN = 14;
  const TAB20 = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22',
    '#17becf', '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#c7c7c7', '#dbdb8d', '#9edae5'];

  const state = {
    n: 0, xy: null, lab: null, flags: null, classes: [], colors: [],
    view: { x0: 0, y0: 0, k: 1 }, flaggedOnly: false,
    selected: null, nSelected: 0, box: null, hover: -1,
    grid: null, drawMs: [], ready: false,
  };
  window.__labelauditMap = state; // read by the browser tests (timings, selection)

  function colorOf(i) {
    if (i < TAB20.length) return TAB20[i];
    const h = (i * 137.508) % 360;
    return `hsl(${h}, 60%, 55%)`;
  }
  function rgba32(css) { // CSS colour -> little-endian ABGR uint32 for the pixel buffer
    const c = document.createElement('canvas').getContext('2d');
    c.fillStyle = css;
    c.fillRect(0, 0, 1, 1);
    const [r, g, b] = c.getImageData(0, 0, 1, 1).data;
    return (255 << 24) | (b << 16) | (g << 8) | r;
  }

  // ------------------------------------------------------------------ geometry
  function size() {
    const dpr = window.devicePixelRatio || 1;
    const s = Math.min(canvas.width, canvas.height) - 2 * MARGIN * dpr;
    // the unit square, centred: ox, oy are where data (0, 0) lands at zoom 1
    return { w: canvas.width, h: canvas.height, dpr, s, ox: (canvas.width - s) / 2, oy: (canvas.height - s) / 2 };
  }
  function toScreen(x, y, g) {
    const v = state.view;
    return [(x - v.x0) * v.k * g.s + g.ox, (y - v.y0) * v.k * g.s + g.oy];
  }
  function toData(px, py, g) {
    const v = state.view;
    return [(px - g.ox) / (v.k * g.s) + v.x0, (py - g.oy) / (v.k * g.s) + v.y0];
  }
  function resize() {
    const dpr = window.devicePixelRatio || 1;
    const r = canvas.getBoundingClientRect();
    canvas.width = Math.max(50, Math.round(r.width * dpr));
    canvas.height = Math.max(50, Math.round(r.height * dpr));
    draw();
  }

  // ------------------------------------------------------------------ drawing
  function visible(i) { return !state.flaggedOnly || (state.flags[i] & FLAGGED); }

  function draw() {
    if (!state.ready) return;
    const t0 = performance.now();
    const g = size();
    const img = ctx.createImageData(g.w, g.h);
    const buf = new Uint32Array(img.data.buffer);
    const { xy, lab, flags, n, colors } = state;
    const v = state.view;
    const ks = v.k * g.s, ox = g.ox, oy = g.oy;
    const base = n < 3000 ? 4 : n < 30000 ? 3 : 2; // css px: fewer points, bigger dots
    const dot = Math.max(1, Math.min(8, Math.round((base + Math.log2(v.k)) * g.dpr)));
    const ring = rgba32(getComputedStyle(document.body).color);
    const sel = rgba32('#f59f00');
    const put = (cx, cy, half, color) => {
      const x0 = Math.max(cx - half, 0), x1 = Math.min(cx + half, g.w - 1);
      const y0 = Math.max(cy - half, 0), y1 = Math.min(cy + half, g.h - 1);
      for (let y = y0; y <= y1; y += 1) {
        const row = y * g.w;
        for (let x = x0; x <= x1; x += 1) buf[row + x] = color;
      }
    };
    // unflagged first, then flagged (ringed) on top, then the selection
    for (let pass = 0; pass < 2; pass += 1) {
      for (let i = 0; i < n; i += 1) {
        const f = flags[i] & FLAGGED;
        if ((pass === 0) === Boolean(f) || !visible(i)) continue;
        const px = ((xy[2 * i] - v.x0) * ks + ox) | 0;
        const py = ((xy[2 * i + 1] - v.y0) * ks + oy) | 0;
        if (px < -4 || py < -4 || px >= g.w + 4 || py >= g.h + 4) continue;
        const half = dot >> 1;
        if (f) put(px, py, half + 1, ring);
        put(px, py, half, colors[lab[i]]);
      }
    }
    if (state.selected) {
      for (let i = 0; i < n; i += 1) {
        if (!state.selected[i] || !visible(i)) continue;
        const px = ((xy[2 * i] - v.x0) * ks + ox) | 0;
        const py = ((xy[2 * i + 1] - v.y0) * ks + oy) | 0;
        put(px, py, (dot >> 1) + 1, sel);
      }
    }
    ctx.putImageData(img, 0, 0);
    if (state.box) {
      const b = state.box;
      ctx.strokeStyle = '#f59f00';
      ctx.lineWidth = g.dpr;
      ctx.setLineDash([5 * g.dpr, 4 * g.dpr]);
      ctx.strokeRect(Math.min(b.x0, b.x1), Math.min(b.y0, b.y1), Math.abs(b.x1 - b.x0), Math.abs(b.y1 - b.y0));
      ctx.setLineDash([]);
    }
    if (state.hover >= 0) {
      const [hx, hy] = toScreen(state.xy[2 * state.hover], state.xy[2 * state.hover + 1], g);
      ctx.strokeStyle = '#f59f00';
      ctx.lineWidth = 2 * g.dpr;
      ctx.beginPath();
      ctx.arc(hx, hy, 6 * g.dpr, 0, 2 * Math.PI);
      ctx.stroke();
    }
    state.drawMs.push(performance.now() - t0);
    if (state.drawMs.length > 50) state.drawMs.shift();
  }

  let frame = 0;
  function redraw() { if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); }); }

  // ------------------------------------------------------------------ hover: a bucket grid in data space
  const GRID = 256;
  function buildGrid() {
    const { xy, n } = state;
    const cell = new Int32Array(n);
    const counts = new Int32Array(GRID * GRID + 1);
    for (let i = 0; i < n; i += 1) {
      const gx = Math.min(GRID - 1, Math.max(0, (xy[2 * i] * GRID) | 0));
      const gy = Math.min(GRID - 1, Math.max(0, (xy[2 * i + 1] * GRID) | 0));
      cell[i] = gy * GRID + gx;
      counts[cell[i] + 1] += 1;
    }
    for (let c = 1; c <= GRID * GRID; c += 1) counts[c] += counts[c - 1];
    const order = new Int32Array(n);
    const fill = counts.slice(0, GRID * GRID);
    for (let i = 0; i < n; i += 1) order[fill[cell[i]]++] = i;
    state.grid = { start: counts, order };
  }
  function nearest(px, py) {
    const g = size();
    const [dx, dy] = toData(px, py, g);
    const r = (8 * g.dpr) / (state.view.k * g.s); // 8 css px, in data units
    const { start, order } = state.grid;
    let best = -1, bestD = r * r;
    const gx0 = Math.max(0, ((dx - r) * GRID) | 0), gx1 = Math.min(GRID - 1, ((dx + r) * GRID) | 0);
    const gy0 = Math.max(0, ((dy - r) * GRID) | 0), gy1 = Math.min(GRID - 1, ((dy + r) * GRID) | 0);
    for (let gy = gy0; gy <= gy1; gy += 1) {
      for (let gx = gx0; gx <= gx1; gx += 1) {
        const c = gy * GRID + gx;
        for (let j = start[c]; j < start[c + 1]; j += 1) {
          const i = order[j];
          if (!visible(i)) continue;
          const ex = state.xy[2 * i] - dx, ey = state.xy[2 * i + 1] - dy;
          const d = ex * ex + ey * ey;
          if (d < bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  const info = new Map();
  let tipTimer = null;
  function showTip(i, cssX, cssY) {
    if (i < 0) { tip.hidden = true; return; }
    tip.hidden = false;
    tip.style.left = `${Math.min(cssX + 16, canvas.clientWidth - 190)}px`;
    tip.style.top = `${Math.max(cssY - 70, 4)}px`;
    $('#map-tip-img').src = `/api/samples/${i}/thumbnail`;
    const base = `#${i} · ${state.classes[state.lab[i]]}${state.flags[i] & FLAGGED ? ' · flagged' : ''}`;
    $('#map-tip-text').textContent = info.get(i) || base;
    clearTimeout(tipTimer);
    if (info.has(i)) return;
    tipTimer = setTimeout(() => {
      LA.api('GET', `/api/samples/${i}?k=0`).then((s) => {
        const d = s.decision ? ` · ${s.decision.action}${s.decision.label ? ' ' + s.decision.label : ''}` : '';
        info.set(i, `${s.name}\ngiven ${s.given_label} → suggested ${s.suggested_label} · score ${s.mislabel_score.toFixed(2)}${d}`);
        if (state.hover === i) $('#map-tip-text').textContent = info.get(i);
      }).catch(() => {});
    }, 120);
  }

  // ------------------------------------------------------------------ selection
  function selectBox(b) {
    const g = size();
    const [ax, ay] = toData(Math.min(b.x0, b.x1), Math.min(b.y0, b.y1), g);
    const [bx, by] = toData(Math.max(b.x0, b.x1), Math.max(b.y0, b.y1), g);
    const sel = new Uint8Array(state.n);
    let count = 0;
    for (let i = 0; i < state.n; i += 1) {
      const x = state.xy[2 * i], y = state.xy[2 * i + 1];
      if (x >= ax && x <= bx && y >= ay && y <= by && visible(i)) { sel[i] = 1; count += 1; }
    }
    setSelection(count ? sel : null, count);
  }
  function setSelection(sel, count) {
    state.selected = sel;
    state.nSelected = count;
    $('#map-selcount').textContent = count.toLocaleString('en-US');
    $('#map-open').disabled = count === 0;
    redraw();
  }
  async function openSelection() {
    if (!state.nSelected) { LA.toast('Drag a box around some points first'); return; }
    const ids = [];
    for (let i = 0; i < state.n; i += 1) if (state.selected[i]) ids.push(i);
    try {
      const res = await LA.api('POST', '/api/selections', { sample_ids: ids });
      location.href = res.grid_url;
    } catch (err) {
      LA.toast(`Could not open the selection: ${err.message}`, 'error');
    }
  }

  // ------------------------------------------------------------------ mouse and keys
  let drag = null;
  const cssToPx = (e) => {
    const r = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    return [(e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr, e.clientX - r.left, e.clientY - r.top];
  };
  canvas.addEventListener('mousedown', (e) => {
    if (!state.ready || e.button !== 0) return;
    const [px, py] = cssToPx(e);
    drag = { pan: e.shiftKey, x: px, y: py, view: { ...state.view }, moved: false };
    e.preventDefault();
    canvas.focus();
  });
  window.addEventListener('mousemove', (e) => {
    if (!state.ready) return;
    const [px, py, cx, cy] = cssToPx(e);
    if (drag) {
      if (Math.abs(px - drag.x) + Math.abs(py - drag.y) > 4) drag.moved = true;
      if (drag.pan) {
        const g = size();
        state.view.x0 = drag.view.x0 - (px - drag.x) / (state.view.k * g.s);
        state.view.y0 = drag.view.y0 - (py - drag.y) / (state.view.k * g.s);
      } else if (drag.moved) {
        state.box = { x0: drag.x, y0: drag.y, x1: px, y1: py };
      }
      redraw();
      return;
    }
    if (e.target !== canvas) return;
    const i = nearest(px, py);
    if (i !== state.hover) { state.hover = i; redraw(); }
    showTip(i, cx, cy);
  });
  window.addEventListener('mouseup', () => {
    if (!drag) return;
    if (!drag.pan && drag.moved && state.box) selectBox(state.box);
    else if (!drag.moved && state.hover >= 0) location.href = `/samples/${state.hover}?flagged=all`;
    state.box = null;
    drag = null;
    redraw();
  });
  canvas.addEventListener('mouseleave', () => { state.hover = -1; tip.hidden = true; redraw(); });
  canvas.addEventListener('wheel', (e) => {
    if (!state.ready) return;
    e.preventDefault();
    const g = size();
    const [px, py] = cssToPx(e);
    const [dx, dy] = toData(px, py, g);
    const k = Math.min(400, Math.max(0.5, state.view.k * Math.exp(-e.deltaY * 0.0015)));
    state.view.k = k;
    state.view.x0 = dx - (px - g.ox) / (k * g.s);
    state.view.y0 = dy - (py - g.oy) / (k * g.s);
    redraw();
  }, { passive: false });

  function reset() { state.view = { x0: 0, y0: 0, k: 1 }; redraw(); }
  function toggleFlagged() {
    state.flaggedOnly = !state.flaggedOnly;
    $('#map-flagged').checked = state.flaggedOnly;
    redraw();
  }
  $('#map-open').addEventListener('click', openSelection);
  $('#map-clear').addEventListener('click', () => setSelection(null, 0));
  $('#map-reset').addEventListener('click', reset);
  $('#map-flagged').addEventListener('change', () => { state.flaggedOnly = !$('#map-flagged').checked; toggleFlagged(); });
  LA.bindKeys({
    help: LA.toggleHelp,
    queue: () => { location.href = '/queue'; },
    open_grid: openSelection,
    none: () => setSelection(null, 0),
    reset,
    flagged_only: toggleFlagged,
  });

  // ------------------------------------------------------------------ loading
  function legend() {
    const counts = new Int32Array(state.classes.length);
    for (let i = 0; i < state.n; i += 1) counts[state.lab[i]] += 1;
    $('#map-legend').replaceChildren(...state.classes.map((c, i) => {
      const li = LA.el('li');
      const sw = LA.el('i', 'sw');
      sw.style.background = colorOf(i);
      li.append(sw, LA.el('span', 'lg-name', c), LA.el('b', null, counts[i].toLocaleString('en-US')));
      return li;
    }));
  }

  async function load() {
    const t0 = performance.now();
    let meta;
    for (;;) {
      meta = await LA.api('GET', '/api/map');
      if (meta.status === 'ready') break;
      if (meta.status === 'error') { status.textContent = `The map could not be computed: ${meta.error}`; return; }
      status.textContent = 'Computing the map (once per scan; about 10 s for 100,000 images)…';
      await new Promise((r) => setTimeout(r, 1000));
    }
    const r = await fetch('/api/map/points', { credentials: 'same-origin' });
    if (!r.ok) { status.textContent = `Could not load the map (HTTP ${r.status})`; return; }
    const buf = await r.arrayBuffer();
    const n = meta.n;
    state.n = n;
    state.xy = new Float32Array(buf, 0, 2 * n);
    state.lab = new Uint16Array(buf, 8 * n, n);
    state.flags = new Uint8Array(buf, 10 * n, n);
    state.classes = meta.classes;
    state.colors = Uint32Array.from(meta.classes.map((_, i) => rgba32(colorOf(i))));
    buildGrid();
    legend();
    $('#map-method').textContent = `${n.toLocaleString('en-US')} images · ${meta.method}`;
    state.ready = true;
    status.hidden = true;
    resize();
    state.loadMs = performance.now() - t0;
    canvas.dataset.ready = 'true';
  }
  new ResizeObserver(() => { if (state.ready) resize(); }).observe(canvas);
  load().catch((err) => { status.textContent = `Could not load the map: ${err.message}`; });
})();

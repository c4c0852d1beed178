/* labelaudit review app: keyboard-first decisions on server-rendered pages.
 *
 * Every decision is POSTed to the JSON API in order (one request at a time) and the
 * page shows it as saved only once the server has committed it. Class and file names
 * only ever reach the DOM through textContent, never as HTML.
 */
(() => {
  'use strict';

  const cfg = JSON.parse(document.getElementById('la-config').textContent);
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const CLASS_OF_KEY = new Map(cfg.class_keys); // number key -> class (the scan's class order and keys)
  const KEY_OF_CLASS = new Map(cfg.class_keys.map(([k, c]) => [c, k]));
  const keyOfClass = (c) => KEY_OF_CLASS.get(c) || '';
  const setCookie = (name, value) => { document.cookie = `${name}=${encodeURIComponent(value)}; path=/; max-age=31536000; SameSite=Strict`; };
  const ACTION_TEXT = cfg.action_text; // from labelaudit.review.ACTION_TEXT

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  // ------------------------------------------------------------------ toast
  let toastTimer = null;
  function toast(message, kind) {
    const t = $('#toast');
    t.textContent = message;
    t.className = 'toast show' + (kind === 'error' ? ' error' : '');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.className = 'toast' + (kind === 'error' ? ' error' : ''); }, kind === 'error' ? 6000 : 1800);
  }

  // ------------------------------------------------------------------ API (serialised writes)
  /* A fresh id for one user action: its request, and every retry of it, carry the id, so the
     server stores the action once however often the connection drops. (crypto.randomUUID
     needs a secure context; getRandomValues works on plain http too.) */
  function newRequestId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  const RETRY_DELAYS_MS = [300, 1000, 3000];
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /* fetch, retried after a network error or a gateway status when the request is idempotent
     (it carries a request_id). */
  async function send(url, opts, idempotent) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        const r = await fetch(url, opts);
        if (!idempotent || ![502, 503, 504].includes(r.status) || attempt >= RETRY_DELAYS_MS.length) return r;
      } catch (err) {
        if (!idempotent || attempt >= RETRY_DELAYS_MS.length) throw err;
      }
      await sleep(RETRY_DELAYS_MS[attempt]);
    }
  }

  async function api(method, url, body) {
    const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    // the scan this page was made from: a re-scan renumbers the samples, and the server then refuses (409)
    if (method !== 'GET' && document.body.dataset.scan) opts.headers['X-Labelaudit-Scan'] = document.body.dataset.scan;
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const r = await send(url, opts, Boolean(body && body.request_id));
    if (!r.ok) {
      let detail = `HTTP ${r.status}`;
      try {
        const j = await r.json();
        if (typeof j.detail === 'string') detail = j.detail;
      } catch (_) { /* not JSON */ }
      throw new Error(detail);
    }
    return r.json();
  }
  let chain = Promise.resolve();
  let pending = 0;
  function enqueue(fn) {
    pending += 1;
    const p = chain.then(fn, fn);
    chain = p.catch(() => {}).then(() => { pending -= 1; });
    return p;
  }
  window.addEventListener('beforeunload', (e) => {
    if (pending > 0) { e.preventDefault(); e.returnValue = ''; }
  });

  // ------------------------------------------------------------------ progress in the top bar
  function bumpProgress(delta) {
    if (!delta) return;
    const p = cfg.progress;
    p.reviewed = Math.max(0, p.reviewed + delta);
    const b = $('#prog-reviewed');
    if (b) b.textContent = p.reviewed.toLocaleString('en-US');
    const bar = $('#prog-bar');
    if (bar) bar.value = p.reviewed;
  }

  // ------------------------------------------------------------------ decision state in the DOM
  function renderStatus(box, d) {
    if (!box) return;
    box.replaceChildren();
    if (!d) { box.append(el('span', 'badge b-none', 'unreviewed')); return; }
    box.append(el('span', `badge b-${d.action}`, ACTION_TEXT[d.action] || d.action));
    if (d.action === 'unsure') box.append(el('span', 'st-hint', ' second opinion wanted'));
    if (d.label !== null && d.label !== undefined) { box.append(' '); box.append(el('b', 'st-label', d.label)); }
    if (d.note) { box.append(' '); box.append(el('span', 'st-note', `“${d.note}”`)); }
    box.append(el('span', 'st-who', `${d.reviewer} · ${String(d.decided_at).slice(0, 16).replace('T', ' ')}`));
  }

  function applyDecision(node, d) {
    if (!node) return;
    node.classList.remove('unsaved');
    const was = node.classList.contains('decided');
    for (const c of Array.from(node.classList)) if (c.startsWith('d-')) node.classList.remove(c);
    node.classList.toggle('decided', !!d);
    if (d) node.classList.add(`d-${d.action}`);
    node.dataset.action = d ? d.action : '';
    node.dataset.label = d && d.label !== null ? d.label : '';
    node.dataset.note = d ? d.note : '';
    renderStatus($('.status', node), d);
    const badge = $('.cell-badge', node);
    if (badge) badge.textContent = d ? ({ unusable: '✕ unusable', unsure: '? unsure' }[d.action] || d.label) : '';
    if (node.dataset.flagged === '1') bumpProgress((d ? 1 : 0) - (was ? 1 : 0));
  }

  function nodeFor(id) { return document.getElementById(`s-${id}`); }

  // ------------------------------------------------------------------ dialogs
  /* Show a modal dialog; `setup(finish)` wires it up. The promise resolves as soon as
   * finish(value) is called (Escape: null), so a key pressed right after Enter already
   * sees the result; focus leaves the dialog at once so it cannot swallow later keys. */
  function modal(dlg, setup) {
    return new Promise((resolve) => {
      let done = false;
      const finish = (value) => {
        if (done) return;
        done = true;
        if (dlg.contains(document.activeElement)) document.activeElement.blur();
        if (dlg.open) dlg.close();
        resolve(value);
      };
      dlg.addEventListener('close', () => finish(null), { once: true });
      dlg.showModal();
      setup(finish);
    });
  }

  function chooseClass(node) {
    const dlg = $('#chooser');
    const input = $('#chooser-input');
    const list = $('#chooser-list');
    const given = node ? node.dataset.given : null;
    const sugg = node ? node.dataset.suggested : null;
    let items = [];
    // opens on the suggested class (the likeliest pick), not on the first one
    let sel = Math.max(cfg.classes.indexOf(sugg !== given ? sugg : ''), 0);
    return modal(dlg, (finish) => {
      function render() {
        const q = input.value.trim().toLowerCase();
        const all = cfg.classes.map((c, i) => ({ c, i }));
        items = q === '' ? all : all
          .filter(({ c }) => c.toLowerCase().includes(q) || keyOfClass(c) === q)
          .sort((a, b) => (b.c.toLowerCase().startsWith(q) - a.c.toLowerCase().startsWith(q)) || a.i - b.i);
        sel = Math.min(sel, Math.max(items.length - 1, 0));
        list.replaceChildren();
        items.forEach(({ c }, k) => {
          const li = el('li');
          li.setAttribute('role', 'option');
          li.setAttribute('aria-selected', k === sel ? 'true' : 'false');
          li.append(el('span', 'num', keyOfClass(c)), el('span', 'name', c));
          if (c === given) li.append(el('span', 'hint', 'given'));
          else if (c === sugg) li.append(el('span', 'hint', 'suggested'));
          li.addEventListener('click', () => finish(c));
          list.append(li);
        });
        const cur = list.children[sel];
        if (cur) cur.scrollIntoView({ block: 'nearest' });
      }
      input.value = '';
      input.oninput = () => { sel = 0; render(); };
      input.onkeydown = (e) => {
        if (!dlg.open) return;
        if (e.key === 'ArrowDown') { sel = Math.min(sel + 1, items.length - 1); render(); e.preventDefault(); }
        else if (e.key === 'ArrowUp') { sel = Math.max(sel - 1, 0); render(); e.preventDefault(); }
        else if (e.key === 'Enter') { e.preventDefault(); if (items[sel]) finish(items[sel].c); }
      };
      render();
      input.focus();
    });
  }

  function askNote(initial) {
    const dlg = $('#note-dialog');
    const ta = $('#note-input');
    return modal(dlg, (finish) => {
      ta.value = initial || '';
      ta.onkeydown = (e) => {
        if (!dlg.open) return;
        if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); finish(ta.value.trim()); }
      };
      ta.focus();
      ta.select();
    });
  }

  function askTags(initial) {
    const dlg = $('#tags-dialog');
    const input = $('#tags-input');
    return modal(dlg, (finish) => {
      input.value = initial || '';
      input.onkeydown = (e) => {
        if (!dlg.open) return;
        if (e.key === 'Enter') { e.preventDefault(); finish(input.value); }
      };
      fetch('/api/tags', { credentials: 'same-origin' }).then((r) => (r.ok ? r.json() : [])).then((tags) => {
        $('#tag-names').replaceChildren(...tags.map((t) => { const o = el('option'); o.value = t.tag; return o; }));
      }).catch(() => {});
      input.focus();
      input.select();
    });
  }

  const splitTags = (text) => Array.from(new Set(String(text || '').split(',').map((t) => t.trim().toLowerCase()).filter(Boolean)));

  function renderTags(node, tags) {
    node.dataset.tags = tags.join(', ');
    const box = $('.tags', node);
    if (!box) return;
    box.replaceChildren(...tags.map((t) => {
      const a = el('a', 'tag', t);
      a.href = '/queue?' + new URLSearchParams({ tag: t, flagged: 'all' }).toString();
      return a;
    }));
  }

  /* Ask for the tags of a sample and save the difference (tags added, tags removed). */
  async function editTags(node) {
    const before = splitTags(node.dataset.tags);
    const text = await askTags(before.join(', '));
    if (text === null) return;
    const after = splitTags(text);
    const add = after.filter((t) => !before.includes(t));
    const remove = before.filter((t) => !after.includes(t));
    if (!add.length && !remove.length) return;
    await enqueue(async () => {
      try {
        const res = await api('POST', `/api/samples/${node.dataset.id}/tags`, { add, remove });
        renderTags(node, res.tags);
        toast(res.tags.length ? `Tags: ${res.tags.join(', ')}` : 'Tags removed');
      } catch (err) {
        toast(`Tags not saved: ${err.message}`, 'error');
      }
    });
  }

  function toggleHelp() {
    const dlg = $('#help');
    if (dlg.open) dlg.close(); else dlg.showModal();
  }
  $('#help').addEventListener('keydown', (e) => { if (e.key === '?') { e.preventDefault(); $('#help').close(); } });
  $$('[data-cmd="help"]').forEach((b) => b.addEventListener('click', toggleHelp));

  // ------------------------------------------------------------------ decisions
  const pendingNotes = new Map(); // sample id -> note typed before any decision

  /* Resolve a decision command into {action, label}; null when cancelled. */
  async function resolveCommand(cmd, key, node) {
    switch (cmd) {
      case 'accept': return { action: 'accept' };
      case 'suggested': return { action: 'suggested' };
      case 'unusable': return { action: 'unusable' };
      case 'unsure': return { action: 'unsure' };
      case 'clear': return { action: 'clear' };
      case 'class': {
        const label = CLASS_OF_KEY.get(key);
        if (label === undefined) { toast(`No class has the number ${key}`, 'error'); return null; }
        return { action: 'relabel', label };
      }
      case 'choose': {
        const label = await chooseClass(node);
        return label === null ? null : { action: 'relabel', label };
      }
      default: return null;
    }
  }

  function describe(d, name) {
    if (!d) return `${name}: cleared`;
    if (d.action === 'unusable') return `${name}: unusable`;
    if (d.action === 'unsure') return `${name}: unsure (second opinion)`;
    return `${name}: ${ACTION_TEXT[d.action]} ${d.label}`;
  }

  /* POST one decision for the given sample ids (batch when several). */
  function record(ids, spec, note) {
    const nodes = ids.map(nodeFor).filter(Boolean);
    nodes.forEach((n) => n.classList.add('saving'));
    const requestId = newRequestId(); // one user action: one id, reused by every retry
    return enqueue(async () => {
      try {
        let res;
        if (ids.length === 1) {
          const node = nodeFor(ids[0]);
          const kept = pendingNotes.has(ids[0]) ? pendingNotes.get(ids[0]) : (node && node.dataset.note) || '';
          const n = note !== undefined ? note : kept;
          res = await api('POST', '/api/decisions', { sample_id: Number(ids[0]), action: spec.action, label: spec.label || null, note: n, request_id: requestId });
        } else {
          res = await api('POST', '/api/decisions/batch', { sample_ids: ids.map(Number), action: spec.action, label: spec.label || null, note: note || '', request_id: requestId });
        }
        for (const r of res.recorded) {
          pendingNotes.delete(String(r.sample_id));
          applyDecision(nodeFor(r.sample_id), r.decision);
        }
        const first = res.recorded[0];
        const name = first.path.split('/').pop();
        toast(res.recorded.length > 1 ? `Saved ${res.recorded.length} decisions` : `Saved · ${describe(first.decision, name)}`);
        return res;
      } catch (err) {
        nodes.forEach((n) => n.classList.add('unsaved'));
        toast(`Not saved: ${err.message}. The sample is marked; decide it again.`, 'error');
        throw err;
      } finally {
        nodes.forEach((n) => n.classList.remove('saving'));
      }
    });
  }

  function undo(onUndone) {
    const requestId = newRequestId();
    return enqueue(async () => {
      try {
        const res = await api('POST', '/api/decisions/undo', { request_id: requestId });
        if (!res.undone.length) { toast('Nothing to undo'); return res; }
        for (const r of res.undone) applyDecision(nodeFor(r.sample_id), r.decision);
        toast(res.undone.length > 1 ? `Undid ${res.undone.length} decisions` : `Undid · ${r0name(res.undone[0])}`);
        if (onUndone) onUndone(res.undone);
        return res;
      } catch (err) {
        toast(`Undo failed: ${err.message}`, 'error');
        throw err;
      }
    });
  }
  function r0name(r) { return r.path.split('/').pop() + (r.decision ? ` → ${ACTION_TEXT[r.decision.action]}` : ' → unreviewed'); }

  async function editNote(node, after) {
    const id = node.dataset.id;
    const current = node.dataset.action ? node.dataset.note : (pendingNotes.get(id) || '');
    const note = await askNote(current);
    if (note === null) return;
    if (node.dataset.action) {
      const spec = { action: node.dataset.action, label: node.dataset.action === 'relabel' ? node.dataset.label : null };
      await record([id], spec, note).catch(() => {});
    } else {
      pendingNotes.set(id, note);
      toast(note ? 'Note kept; it is saved with the decision' : 'Note removed');
    }
    if (after) after();
  }

  // ------------------------------------------------------------------ images: crisp when enlarged
  function fixRendering(img) {
    if (img.naturalWidth && img.clientWidth && img.naturalWidth > img.clientWidth) img.classList.add('smooth');
  }
  document.addEventListener('load', (e) => { if (e.target.tagName === 'IMG') fixRendering(e.target); }, true);
  $$('img').forEach((img) => { if (img.complete) fixRendering(img); });

  // ------------------------------------------------------------------ infinite scroll
  function setupMore(container, onAdded) {
    let loading = null;
    const io = 'IntersectionObserver' in window
      ? new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadMore(); }, { rootMargin: '900px' })
      : null;
    function watch() {
      const s = $('.sentinel', container);
      if (s && io) io.observe(s);
    }
    function loadMore() {
      if (loading) return loading;
      const s = $('.sentinel', container);
      if (!s) return Promise.resolve(false);
      loading = fetch(s.dataset.next, { credentials: 'same-origin' })
        .then((r) => { if (!r.ok) throw new Error(`HTTP ${r.status}`); return r.text(); })
        .then((html) => {
          const tpl = document.createElement('template');
          tpl.innerHTML = html; // server-rendered, escaped by the template engine
          if (io) io.unobserve(s);
          s.replaceWith(tpl.content);
          $$('img', container).forEach((img) => { if (img.complete) fixRendering(img); });
          if (onAdded) onAdded();
          watch();
          return true;
        })
        .catch((err) => { toast(`Could not load more: ${err.message}`, 'error'); return false; })
        .finally(() => { loading = null; });
      return loading;
    }
    watch();
    return loadMore;
  }

  // ------------------------------------------------------------------ keyboard dispatch
  function bindKeys(handlers) {
    document.addEventListener('keydown', (e) => {
      if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
      const t = e.target;
      const dlg = t.closest ? t.closest('dialog') : null;
      if (dlg && dlg.open) return;
      if ((e.key === 'Enter' || e.key === ' ') && t.closest && t.closest('button, a, summary')) return;
      if (!dlg && t.matches && t.matches('input, textarea, select, [contenteditable]')) {
        if (e.key === 'Escape') t.blur();
        return;
      }
      const cmd = cfg.keys[e.key];
      if (!cmd || !handlers[cmd]) return;
      e.preventDefault();
      handlers[cmd](e);
    });
  }

  const DECISION_CMDS = ['accept', 'suggested', 'class', 'choose', 'unusable', 'unsure', 'clear'];

  // ------------------------------------------------------------------ reviewer name (top bar)
  const who = $('#reviewer-name');
  if (who) who.addEventListener('change', () => who.form.submit());

  // ================================================================== queue
  function queuePage() {
    const list = $('#rows');
    if (!list) { bindKeys({ help: toggleHelp, search: () => $('#search') && $('#search').focus() }); return; }
    const rows = () => $$('.row', list);
    let cur = -1;
    const loadMore = setupMore(list);

    /* Scroll only when the row is not wholly visible between the top bar and the key bar;
       on load, a row that fits on the first screen keeps the page at the top (filters and
       count in view) instead of following the #s-ID anchor. */
    function reveal(r, initial) {
      const top = parseFloat(getComputedStyle(document.documentElement).getPropertyValue('--topbar-h')) || 52;
      const bottom = window.innerHeight - (($('.keysbar') || {}).offsetHeight || 0);
      const rect = r.getBoundingClientRect();
      if (initial && rect.bottom + window.scrollY <= bottom) { window.scrollTo(0, 0); return; }
      if (rect.top < top || rect.bottom > bottom) r.scrollIntoView({ block: 'center' });
    }
    function focusAt(i, scroll = true, initial = false) {
      const rs = rows();
      if (!rs.length) return;
      i = Math.max(0, Math.min(i, rs.length - 1));
      if (rs[cur]) rs[cur].classList.remove('focused');
      cur = i;
      const r = rs[cur];
      r.classList.add('focused');
      if (scroll) reveal(r, initial);
      // not on load: Chrome scrolls to a fragment set before the load event, under the top bar
      if (!initial || location.hash) history.replaceState(null, '', `#s-${r.dataset.id}`);
    }
    function focused() { return rows()[cur] || null; }
    async function next() {
      const rs = rows();
      if (cur < rs.length - 1) { focusAt(cur + 1); return; }
      if (await loadMore()) focusAt(cur + 1);
      else toast('End of the list');
    }
    function prev() { if (cur > 0) focusAt(cur - 1); }

    async function decide(cmd, key) {
      const r = focused();
      if (!r) return;
      const spec = await resolveCommand(cmd, key, r);
      if (!spec) return;
      record([r.dataset.id], spec).catch(() => {});
      if (spec.action !== 'clear') next();
    }

    const handlers = {
      next, prev, help: toggleHelp,
      undo: () => undo((undone) => {
        const i = rows().findIndex((r) => r.dataset.id === String(undone[0].sample_id));
        if (i >= 0) focusAt(i);
      }),
      note: () => { const r = focused(); if (r) editNote(r); },
      tags: () => { const r = focused(); if (r) editTags(r); },
      open: () => { const r = focused(); if (r) location.href = r.dataset.href; },
      grid: () => { const r = focused(); if (r) location.href = r.dataset.grid; },
      search: () => { const s = $('#search'); if (s) { s.focus(); s.select(); } },
    };
    DECISION_CMDS.forEach((c) => { handlers[c] = (e) => decide(c, e.key); });
    bindKeys(handlers);

    list.addEventListener('click', (e) => {
      const r = e.target.closest('.row');
      if (!r) return;
      const i = rows().indexOf(r);
      const btn = e.target.closest('[data-cmd]');
      if (i !== cur) focusAt(i, false);
      if (!btn) return;
      const cmd = btn.dataset.cmd;
      if (cmd === 'note') editNote(r);
      else if (cmd === 'tags') editTags(r);
      else decide(cmd, null);
    });

    // row density: comfortable cards or compact lines, remembered (cookie: the server renders it)
    $$('[data-density]').forEach((b) => b.addEventListener('click', () => {
      const compact = b.dataset.density === 'compact';
      setCookie('la_density', compact ? 'compact' : 'comfortable');
      list.classList.toggle('compact', compact);
      document.body.classList.toggle('compact', compact);
      $$('[data-density]').forEach((x) => {
        const on = x.dataset.density === b.dataset.density;
        x.classList.toggle('on', on);
        x.setAttribute('aria-pressed', on ? 'true' : 'false');
      });
      const r = focused();
      if (r) reveal(r, false);
    }));

    const fromHash = location.hash.startsWith('#s-') ? rows().findIndex((r) => `#${r.id}` === location.hash) : -1;
    const firstOpen = rows().findIndex((r) => !r.classList.contains('decided'));
    focusAt(fromHash >= 0 ? fromHash : Math.max(firstOpen, 0), true, true);
  }

  // ================================================================== grid
  function gridPage() {
    const pick = $('#pair-select');
    if (pick) pick.addEventListener('change', () => { location.href = '/grid?' + (pick.value || 'all=1'); });
    const box = $('#cells');
    const queueLink = $('.gridhead a[href^="/queue"]');
    const base = { help: toggleHelp, queue: () => { if (queueLink) location.href = queueLink.href; } };
    if (!box) { bindKeys(base); return; }
    const cells = () => $$('.cell', box);
    const selected = new Set();
    let cur = -1;
    let anchor = null;
    const loadMore = setupMore(box, () => paintSelection());

    /* Pair mode fills the screen: a pair of few samples gets tiles as large as fit. */
    function fitTiles() {
      const total = Number(box.dataset.total || 0);
      if (!total || total > 48 || $('.sentinel', box)) { box.style.gridTemplateColumns = ''; return; }
      const gap = 8, caption = 24;
      const width = box.clientWidth;
      const height = window.innerHeight - box.getBoundingClientRect().top - window.scrollY
        - (($('.keysbar') || {}).offsetHeight || 0) - 16;
      let best = 0, bestCols = 1;
      for (let cols = 1; cols <= total; cols += 1) {
        const rowsN = Math.ceil(total / cols);
        const side = Math.min((width - gap * (cols - 1)) / cols, (height - gap * (rowsN - 1)) / rowsN - caption);
        if (side > best) { best = side; bestCols = cols; }
      }
      const side = Math.max(110, Math.min(360, Math.floor(best)));
      box.style.gridTemplateColumns = `repeat(${bestCols}, ${side}px)`;
    }
    fitTiles();
    window.addEventListener('resize', fitTiles);

    $$('[data-tiles]').forEach((b) => b.addEventListener('click', () => {
      setCookie('la_tiles', b.dataset.tiles);
      box.classList.remove('tiles-s', 'tiles-m', 'tiles-l');
      box.classList.add(`tiles-${b.dataset.tiles}`);
      box.dataset.total = '0';  // a chosen size wins over the fit
      box.style.gridTemplateColumns = '';
      $$('[data-tiles]').forEach((x) => { x.classList.toggle('on', x === b); x.setAttribute('aria-pressed', x === b ? 'true' : 'false'); });
    }));

    /* The pair menu's "(reviewed/flagged)" counts, brought up to date after each decision. */
    async function refreshPairs() {
      if (!pick) return;
      try {
        const pairs = await api('GET', '/api/pairs');
        const byKey = new Map(pairs.map((p) => [`${p.given}\u0000${p.suggested}`, p]));
        for (const o of Array.from(pick.options)) {
          if (!o.value) continue;
          const q = new URLSearchParams(o.value);
          const p = byKey.get(`${q.get('given')}\u0000${q.get('suggested')}`);
          if (p) o.textContent = `${p.given} → ${p.suggested}  (${p.n_reviewed}/${p.n})`;
        }
      } catch (_) { /* the counts catch up on the next page load */ }
    }

    function paintSelection() {
      for (const c of cells()) {
        const on = selected.has(c.dataset.id);
        c.classList.toggle('selected', on);
        c.setAttribute('aria-selected', on ? 'true' : 'false');
      }
      $('#selcount').textContent = String(selected.size);
    }
    function focusAt(i) {
      const cs = cells();
      if (!cs.length) return;
      i = Math.max(0, Math.min(i, cs.length - 1));
      if (cs[cur]) cs[cur].classList.remove('focused');
      cur = i;
      cs[cur].classList.add('focused');
      cs[cur].scrollIntoView({ block: 'nearest' });
    }
    function columns() {
      return getComputedStyle(box).gridTemplateColumns.split(' ').filter(Boolean).length || 1;
    }
    async function move(delta) {
      const cs = cells();
      const target = cur + delta;
      if (target >= cs.length && $('.sentinel', box)) await loadMore();
      focusAt(target);
    }
    function toggle(c) {
      const id = c.dataset.id;
      if (selected.has(id)) selected.delete(id); else selected.add(id);
      anchor = cells().indexOf(c);
      paintSelection();
    }
    function targets() {
      if (selected.size) return Array.from(selected);
      const c = cells()[cur];
      return c ? [c.dataset.id] : [];
    }
    async function decide(cmd, key) {
      const ids = targets();
      if (!ids.length) return;
      const spec = await resolveCommand(cmd, key, ids.length === 1 ? nodeFor(ids[0]) : null);
      if (!spec) return;
      const res = await record(ids, spec).catch(() => null);
      if (!res) return;
      selected.clear();
      paintSelection();
      refreshPairs();
      if (ids.length === 1) move(1);
    }
    const goPair = (sel) => { const a = $(sel); if (a) location.href = a.href; else toast('No more pairs'); };
    const handlers = {
      ...base,
      right: () => move(1), left: () => move(-1), down: () => move(columns()), up: () => move(-columns()),
      toggle: () => { const c = cells()[cur]; if (c) toggle(c); },
      all: () => { cells().forEach((c) => selected.add(c.dataset.id)); paintSelection(); },
      /* '*': the unreviewed tiles only; pressed again (nothing left to add): every tile. */
      unreviewed: () => {
        const open = cells().filter((c) => !c.classList.contains('decided')).map((c) => c.dataset.id);
        const same = open.length === selected.size && open.every((id) => selected.has(id));
        if (same || !open.length) cells().forEach((c) => selected.add(c.dataset.id));
        else { selected.clear(); open.forEach((id) => selected.add(id)); }
        paintSelection();
      },
      next_pair: () => goPair('#next-pair'),
      prev_pair: () => goPair('#prev-pair'),
      none: () => { selected.clear(); paintSelection(); },
      open: () => { const c = cells()[cur]; if (c) location.href = c.dataset.href; },
      undo: () => undo((undone) => {
        const i = cells().findIndex((c) => c.dataset.id === String(undone[0].sample_id));
        if (i >= 0) focusAt(i);
      }),
    };
    DECISION_CMDS.forEach((c) => { handlers[c] = (e) => decide(c, e.key); });
    bindKeys(handlers);

    box.addEventListener('click', (e) => {
      const c = e.target.closest('.cell');
      if (!c) return;
      const i = cells().indexOf(c);
      if (e.shiftKey && anchor !== null) {
        const [a, b] = [Math.min(anchor, i), Math.max(anchor, i)];
        cells().slice(a, b + 1).forEach((x) => selected.add(x.dataset.id));
        paintSelection();
      } else {
        toggle(c);
      }
      focusAt(i);
    });
    box.addEventListener('dblclick', (e) => {
      const c = e.target.closest('.cell');
      if (c) location.href = c.dataset.href;
    });
    $$('#gridbar [data-cmd]').forEach((b) => b.addEventListener('click', () => {
      const h = handlers[b.dataset.cmd];
      if (h) h({ key: null });
    }));
    focusAt(Math.max(cells().findIndex((c) => !c.classList.contains('decided')), 0));
  }

  // ================================================================== sample page
  function samplePage() {
    const node = $('article.sample');
    const go = (sel) => { const a = $(sel); if (a) location.href = a.href; };
    const noteField = $('#note-field');
    async function decide(cmd, key) {
      const spec = await resolveCommand(cmd, key, node);
      if (!spec) return;
      const res = await record([node.dataset.id], spec, noteField ? noteField.value.trim() : '').catch(() => null);
      if (res) location.reload();
    }
    const handlers = {
      help: toggleHelp,
      next: () => go('#next-link'),
      prev: () => go('#prev-link'),
      queue: () => go('.sample-nav a[data-cmd="queue"]'),
      undo: () => undo(() => location.reload()),
      tags: () => editTags(node),
      note: async () => {
        const note = await askNote(noteField ? noteField.value : '');
        if (note === null) return;
        if (noteField) noteField.value = note;
        if (node.dataset.action) {
          const res = await record([node.dataset.id], { action: node.dataset.action, label: node.dataset.action === 'relabel' ? node.dataset.label : null }, note).catch(() => null);
          if (res) location.reload();
        } else {
          toast('Note kept; it is saved with the decision');
        }
      },
    };
    DECISION_CMDS.forEach((c) => { handlers[c] = (e) => decide(c, e.key); });
    bindKeys(handlers);
    // the form's class button: with JavaScript, relabel through the API like the keys do
    $$('.tagline [data-cmd="tags"]').forEach((b) => b.addEventListener('click', () => editTags(node)));
    const form = $('form.decide');
    if (form) {
      form.addEventListener('submit', (e) => {
        const btn = e.submitter;
        if (!btn) return;
        e.preventDefault();
        const action = btn.value;
        const spec = action === 'relabel' ? { action, label: $('#relabel-select').value } : { action };
        record([node.dataset.id], spec, noteField ? noteField.value.trim() : '').then(() => location.reload(), () => {});
      });
    }
  }

  // ================================================================== simple pages
  function simplePage() {
    bindKeys({
      help: toggleHelp,
      queue: () => { location.href = '/queue'; },
      grid: () => { location.href = '/grid'; },
      map: () => { location.href = '/map'; },
    });
  }

  window.labelaudit = { bindKeys, toggleHelp, toast, api, el };  // for map.js
  ({ queue: queuePage, grid: gridPage, sample: samplePage, map: () => {} }[cfg.page] || simplePage)();
})();

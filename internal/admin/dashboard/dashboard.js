'use strict';
// The sluice dashboard: polls /stats every second and updates the page in
// place. Everything it shows comes from /stats; it loads nothing else.
(function () {
  var TOKEN_KEY = 'sluice-admin-token';
  var POLL_MS = 1000;
  var RETRY_MS = 2000;
  var STALE_MS = 5000;

  var token = null;
  try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { token = null; }
  var timer = 0;
  var lastOK = 0;
  var routes = new Map(); // route name -> view
  var trKey = '';

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function setText(node, s) { if (node.textContent !== s) node.textContent = s; }
  function setClass(node, c) { if (node.className !== c) node.className = c; }

  // ---- formatting

  function fmtInt(n) { return n == null ? '–' : Number(n).toLocaleString('en-US'); }
  function fmtRate(v) {
    if (v == null) return '–';
    if (v === 0) return '0';
    if (v < 0.1) return v.toFixed(2);
    if (v < 10) return v.toFixed(1);
    return Math.round(v).toLocaleString('en-US');
  }
  function fmtPct(v) {
    if (v == null) return '–';
    var p = v * 100;
    if (p === 0) return '0%';
    if (p < 0.1) return '<0.1%';
    return (p < 10 ? p.toFixed(1) : String(Math.round(p))) + '%';
  }
  function fmtMs(v) {
    if (v == null) return '–';
    if (v < 1) return v.toFixed(2) + ' ms';
    if (v < 10) return v.toFixed(1) + ' ms';
    if (v < 1000) return Math.round(v) + ' ms';
    return (v / 1000).toFixed(v < 10000 ? 2 : 1) + ' s';
  }
  function fmtAge(sec) {
    sec = Math.max(0, Math.floor(sec));
    var d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600);
    var m = Math.floor(sec % 3600 / 60), s = sec % 60;
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + (m < 10 ? '0' : '') + m + 'm';
    if (m > 0) return m + 'm ' + (s < 10 ? '0' : '') + s + 's';
    return s + 's';
  }
  function fmtClock(iso) {
    var d = new Date(iso);
    if (isNaN(d)) return '–';
    return d.toLocaleTimeString('en-GB', { hour12: false });
  }
  function rateClass(v) { return v == null ? '' : v >= 0.05 ? 'bad' : v >= 0.01 ? 'warn' : ''; }

  // spark draws values (one a second, oldest first; null for none) as an
  // SVG polyline; gaps where there is no value. Only numbers go into it.
  function spark(values) {
    var max = 0, i, v;
    for (i = 0; i < values.length; i++) { v = values[i]; if (v != null && v > max) max = v; }
    var n = values.length, w = n - 1, segs = [], pts = [];
    for (i = 0; i < n; i++) {
      v = values[i];
      if (v == null) { if (pts.length) { segs.push(pts); pts = []; } continue; }
      var y = max > 0 ? 19 - (v / max) * 18 : 19;
      pts.push(i + ',' + y.toFixed(1));
    }
    if (pts.length) segs.push(pts);
    var s = '<svg viewBox="0 0 ' + w + ' 20" preserveAspectRatio="none" aria-hidden="true">' +
      '<line x1="0" y1="19.5" x2="' + w + '" y2="19.5" vector-effect="non-scaling-stroke"></line>';
    for (i = 0; i < segs.length; i++) {
      var p = segs[i];
      if (p.length === 1) p = [p[0], (parseFloat(p[0]) + 0.5) + ',' + p[0].split(',')[1]];
      s += '<polyline vector-effect="non-scaling-stroke" points="' + p.join(' ') + '"></polyline>';
    }
    return { svg: s + '</svg>', max: max };
  }
  function updateSpark(box, values, what, fmt) {
    var sp = spark(values || []);
    if (box._svg !== sp.svg) { box.innerHTML = sp.svg; box._svg = sp.svg; }
    var label = what + ' over the last minute, peak ' + fmt(sp.max);
    if (box.title !== label) { box.title = label; box.setAttribute('aria-label', label); }
  }

  // ---- the route sections

  var FIGURES = [
    ['requests_per_second', 'Requests/s', fmtRate],
    ['error_rate', 'Error rate', fmtPct],
    ['p50_ms', 'p50', fmtMs],
    ['p99_ms', 'p99', fmtMs],
    ['retries', 'Retries', fmtInt],
    ['ejections', 'Ejections', fmtInt],
    ['in_flight', 'In flight', fmtInt],
    ['rate_limited', 'Rate limited', fmtInt],
    ['overloaded', 'Overloaded', fmtInt]
  ];
  var COLUMNS = [
    ['Backend', 'url'], ['State', ''], ['Requests/s', 'num'], ['Error rate', 'num'],
    ['p50', 'num'], ['p99', 'num'], ['Retries', 'num'], ['Ejections', 'num'],
    ['In flight', 'num'], ['Requests/s, 1 min', ''], ['p99, 1 min', ''], ['Last change', 'reason']
  ];

  function makeRoute(name) {
    var v = { section: el('section', 'route'), figures: {}, rows: new Map(), key: null };
    v.section.dataset.route = name;
    var head = el('div', 'route-head');
    var h = el('h2', null, name);
    v.match = el('span', 'match');
    head.append(h, v.match);
    var line = el('div', 'route-figures');
    var dl = el('dl', 'figures');
    FIGURES.forEach(function (f) {
      var d = el('div'), dt = el('dt', null, f[1]), dd = el('dd', null, '–');
      dd.dataset.figure = f[0];
      d.append(dt, dd);
      dl.append(d);
      v.figures[f[0]] = { box: d, dd: dd, fmt: f[2] };
    });
    var sparks = el('div', 'route-sparks');
    v.rpsSpark = el('span', 'spark');
    v.p99Spark = el('span', 'spark p99');
    var a = el('div'), b = el('div');
    a.append(el('div', 'spark-label', 'Requests/s, 1 min'), v.rpsSpark);
    b.append(el('div', 'spark-label', 'p99, 1 min'), v.p99Spark);
    sparks.append(a, b);
    line.append(dl, sparks);
    v.words = el('p', 'words');
    var wrap = el('div', 'table-wrap');
    var table = el('table', 'grid cards backends');
    table.setAttribute('aria-label', 'Backends of route ' + name);
    var thead = el('thead'), tr = el('tr');
    COLUMNS.forEach(function (c) { tr.append(el('th', c[1] === 'num' ? 'num' : null, c[0])); });
    thead.append(tr);
    v.tbody = el('tbody');
    table.append(thead, v.tbody);
    wrap.append(table);
    v.section.append(head, line, v.words, wrap);
    return v;
  }

  function makeRow(url) {
    var tr = el('tr'), cells = {};
    tr.dataset.backend = url;
    COLUMNS.forEach(function (c, i) {
      var td = el('td', c[1] || null);
      td.dataset.label = c[0];
      tr.append(td);
      cells[i] = td;
    });
    cells[0].textContent = url;
    var state = el('span', 'state');
    cells[1].append(state);
    var rps = el('span', 'spark'), p99 = el('span', 'spark p99');
    cells[9].append(rps);
    cells[10].append(p99);
    return { tr: tr, cells: cells, state: state, rps: rps, p99: p99 };
  }

  function updateRoute(v, r, now) {
    var where = (r.host ? r.host : 'any host') + ' · ' + r.path_prefix + (r.balancer ? ' · ' + r.balancer : '');
    setText(v.match, where);
    FIGURES.forEach(function (f) {
      var fig = v.figures[f[0]];
      var present = Object.prototype.hasOwnProperty.call(r, f[0]);
      fig.box.hidden = !present;
      if (!present) return;
      setText(fig.dd, fig.fmt(r[f[0]]));
    });
    setClass(v.figures.error_rate.dd, rateClass(r.error_rate));
    v.figures.error_rate.box.title = fmtInt(r.errors) + ' of ' + fmtInt(r.requests) + ' requests answered 5xx in the last minute';
    updateSpark(v.rpsSpark, r.series && r.series.requests_per_second, 'Requests per second', fmtRate);
    updateSpark(v.p99Spark, r.series && r.series.p99_ms, 'p99 latency', fmtMs);
    var words = Object.keys(r.errors_by_word || {}).sort().map(function (w) {
      return w + ' ' + fmtInt(r.errors_by_word[w]);
    });
    setText(v.words, words.length ? 'Errors in the last minute: ' + words.join(' · ') : '');
    v.words.hidden = words.length === 0;

    var backends = r.backends || [];
    var key = backends.map(function (b) { return b.url; }).join('\n');
    if (key !== v.key) {
      var rows = new Map();
      v.tbody.replaceChildren();
      backends.forEach(function (b) {
        var row = v.rows.get(b.url) || makeRow(b.url);
        rows.set(b.url, row);
        v.tbody.append(row.tr);
      });
      v.rows = rows;
      v.key = key;
    }
    backends.forEach(function (b) {
      var row = v.rows.get(b.url), c = row.cells;
      setText(row.state, b.state);
      setClass(row.state, 'state state-' + b.state);
      setClass(row.tr, b.state === 'healthy' ? '' : 'row-' + b.state);
      setText(c[2], fmtRate(b.requests_per_second));
      setText(c[3], fmtPct(b.error_rate));
      setClass(c[3], 'num ' + rateClass(b.error_rate));
      c[3].title = fmtInt(b.errors) + ' of ' + fmtInt(b.requests) + ' tries failed in the last minute';
      setText(c[4], fmtMs(b.p50_ms));
      setText(c[5], fmtMs(b.p99_ms));
      setText(c[6], fmtInt(b.retries));
      setText(c[7], fmtInt(b.ejections));
      setText(c[8], fmtInt(b.in_flight));
      updateSpark(row.rps, b.series && b.series.requests_per_second, 'Tries per second', fmtRate);
      updateSpark(row.p99, b.series && b.series.p99_ms, 'p99 latency', fmtMs);
      var since = new Date(b.since), ago = (now - since) / 1000;
      var change = b.state + ' since ' + fmtClock(b.since) + ' (' + fmtAge(ago) + ' ago)';
      if (b.reason) change += ': ' + b.reason;
      if (b.ejection_time && b.ejection_time !== '0s') change += ' · ejected for ' + b.ejection_time;
      setText(c[11], change);
    });
  }

  // ---- the page

  function render(d) {
    $('auth').hidden = true;
    $('main').hidden = false;
    $('forget').hidden = !token;
    var now = new Date(d.time);
    var p = d.process || {};
    setText($('version'), p.version ? 'version ' + p.version : '');
    setText($('p-uptime'), fmtAge(p.uptime_seconds || 0));
    setText($('p-conns'), fmtInt(p.connections_open));
    setText($('p-inflight'), fmtInt(p.requests_in_flight));
    setText($('p-goroutines'), fmtInt(p.goroutines));
    var cfg = p.config || {};
    setText($('p-loaded'), cfg.loaded ? fmtClock(cfg.loaded) + ' (' + fmtAge((now - new Date(cfg.loaded)) / 1000) + ' ago)' : '–');
    var lr = cfg.last_reload, reload = $('p-reload');
    if (lr) {
      setText(reload, lr.result + ' at ' + fmtClock(lr.time));
      setClass(reload, 'small ' + (lr.result === 'ok' ? '' : 'bad'));
      reload.title = (lr.errors || []).join('\n');
    } else {
      setText(reload, 'none yet');
      setClass(reload, 'small');
    }

    var box = $('routes'), seen = new Set();
    (d.routes || []).forEach(function (r, i) {
      var v = routes.get(r.name);
      if (!v) { v = makeRoute(r.name); routes.set(r.name, v); }
      seen.add(r.name);
      updateRoute(v, r, now);
      if (box.children[i] !== v.section) box.insertBefore(v.section, box.children[i] || null);
    });
    routes.forEach(function (v, name) {
      if (!seen.has(name)) { v.section.remove(); routes.delete(name); }
    });

    var trs = d.transitions || [];
    var key = JSON.stringify(trs);
    if (key !== trKey) {
      trKey = key;
      var body = $('tr-body');
      body.replaceChildren();
      trs.forEach(function (t) {
        var tr = el('tr');
        var change = el('td'), what = el('span');
        what.append(el('span', 'state state-' + t.from, t.from), document.createTextNode(' → '),
          el('span', 'state state-' + t.to, t.to));
        change.append(what);
        var cells = [el('td', 'num', fmtClock(t.time)), el('td', null, t.route), el('td', 'url', t.backend),
          change, el('td', 'reason', t.reason)];
        ['Time', 'Route', 'Backend', 'Change', 'Reason'].forEach(function (label, i) { cells[i].dataset.label = label; });
        tr.append.apply(tr, cells);
        body.append(tr);
      });
      $('tr-table').hidden = trs.length === 0;
      $('tr-none').hidden = trs.length > 0;
    }
    lastOK = Date.now();
    var live = $('live');
    setText(live, 'live · updated ' + fmtClock(d.time));
    setClass(live, 'live ok');
  }

  // clear drops every route and backend from the page: without an
  // accepted token it holds none.
  function clear() {
    $('main').hidden = true;
    $('routes').replaceChildren();
    routes.clear();
    $('tr-body').replaceChildren();
    trKey = '';
    setText($('version'), '');
  }

  function problem(msg) {
    var p = $('problem');
    setText(p, msg);
    p.hidden = !msg;
  }

  function askToken(rejected) {
    clearTimeout(timer);
    clear();
    problem('');
    $('forget').hidden = true;
    var live = $('live');
    setText(live, 'token needed');
    setClass(live, 'live');
    var err = $('auth-error');
    if (rejected) {
      err.textContent = 'That token was not accepted (401 Unauthorized). Check admin.token in the configuration and try again.';
    }
    err.hidden = !rejected;
    $('auth').hidden = false;
    $('token').focus();
  }

  function saveToken(t) {
    token = t || null;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage off: the token lives in this page only */ }
  }

  function schedule(ms) { clearTimeout(timer); timer = setTimeout(poll, ms); }

  function poll() {
    var headers = { 'Accept': 'application/json' };
    if (token) headers['Authorization'] = 'Bearer ' + token;
    var ctl = new AbortController();
    var abort = setTimeout(function () { ctl.abort(); }, 4000);
    fetch('stats', { headers: headers, cache: 'no-store', signal: ctl.signal }).then(function (resp) {
      clearTimeout(abort);
      if (resp.status === 401) {
        var sent = !!token;
        saveToken(null);
        askToken(sent);
        return;
      }
      if (!resp.ok) throw new Error('/stats answered ' + resp.status);
      return resp.json().then(function (d) {
        problem('');
        render(d);
        schedule(POLL_MS);
      });
    }).catch(function (err) {
      clearTimeout(abort);
      var why = err && err.name === 'AbortError' ? 'no answer within 4 s' : String(err && err.message || err);
      problem('Cannot get /stats from sluice (' + why + '); retrying. The figures below may be out of date.');
      schedule(RETRY_MS);
    });
  }

  $('auth-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var input = $('token'), t = input.value.trim();
    if (!t) return;
    input.value = '';
    saveToken(t);
    $('auth').hidden = true;
    setText($('live'), 'checking token…');
    poll();
  });
  $('forget').addEventListener('click', function () {
    saveToken(null);
    askToken(false);
  });
  setInterval(function () {
    if (lastOK && Date.now() - lastOK > STALE_MS) {
      var live = $('live');
      setText(live, 'stale · last update ' + fmtAge((Date.now() - lastOK) / 1000) + ' ago');
      setClass(live, 'live stale');
    }
  }, 1000);
  poll();
})();

// presenced admin panel. Plain JavaScript, no build step; loaded with defer
// after vendor/uPlot.iife.min.js. The session is an HttpOnly cookie: this
// script never sees it, it only learns from a 401 that there is none.
(function () {
  "use strict";

  var API = "/api/admin/dashboard/";
  var LOAD_INTERVAL_MS = 5000; // server-load poll (the overview is never polled)
  var HISTORY_REFRESH_MS = 60000; // 24h/7d charts: one new bucket at most this often
  var LIVE_WINDOW_S = 3600; // the 1h chart keeps the last hour
  var SPANS = { "1h": 3600, "24h": 86400, "7d": 7 * 86400 };
  var METRICS = ["onlineUsers", "onlineConnections", "onlineGuests", "peakOnlineToday",
    "totalUsers", "newUsersToday", "activeUsers24h"];

  function $(id) { return document.getElementById(id); }

  var el = {
    login: $("login"),
    form: $("login-form"),
    token: $("token"),
    submit: $("login-submit"),
    loginError: $("login-error"),
    pageError: $("page-error"),
    dashboard: $("dashboard"),
    conn: $("conn-status"),
    logout: $("logout"),
    badge: $("source-badge"),
    source: $("source"),
    generatedAt: $("generated-at"),
    chart: $("chart"),
    chartError: $("chart-error"),
    nodesBody: document.querySelector("#nodes tbody"),
    nodesError: $("nodes-error"),
    loadGeneratedAt: $("load-generated-at"),
    redisStatus: $("redis-status"),
    redisLatency: $("redis-latency"),
    redisMemory: $("redis-memory"),
    dsStatus: $("datastore-status"),
    dsKind: $("datastore-kind"),
    dsLatency: $("datastore-latency"),
    ranges: Array.prototype.slice.call(document.querySelectorAll("button[data-range]"))
  };

  // state of a running dashboard; reset by stop()
  var running = false;
  var generation = 0; // bumps on every start/stop so that late answers are dropped
  var stream = null;
  var checking = false; // an overview check after a stream error is in flight
  var reopenTimer = 0;
  var loadTimer = 0;
  var historyTimer = 0;
  var retryTimer = 0;
  var plot = null;
  var range = "1h";
  var hist = { range: "", xs: [], users: [], conns: [] };
  var live = []; // [t (s), onlineUsers, onlineConnections] from the stream, last hour
  var historySeq = 0;
  var aborter = null; // aborts the running dashboard's requests on stop()

  // ---- helpers ------------------------------------------------------------

  function show(node, on) { node.hidden = !on; }

  function setText(node, text) { node.textContent = text; }

  // req fetches a same-origin path; the dashboard's own requests (scoped)
  // are aborted when it stops, so that none answers after a logout.
  function req(path, opts, scoped) {
    opts = opts || {};
    if (scoped && aborter) opts.signal = aborter.signal;
    opts.credentials = "same-origin";
    opts.cache = "no-store";
    opts.headers = opts.headers || {};
    opts.headers.Accept = "application/json";
    return fetch(path, opts);
  }

  // errorMessage reads {"error": "..."} from a failed response.
  function errorMessage(res) {
    return res.text().then(function (body) {
      try {
        var j = JSON.parse(body);
        if (j && typeof j.error === "string" && j.error) return j.error;
      } catch (e) { /* not JSON */ }
      return "HTTP " + res.status + (res.statusText ? " " + res.statusText : "");
    }, function () { return "HTTP " + res.status; });
  }

  function retryAfter(res) {
    var v = res.headers.get("Retry-After");
    if (!v) return "";
    var n = parseInt(v, 10);
    if (isNaN(n)) {
      var d = Date.parse(v);
      if (isNaN(d)) return "";
      n = Math.max(0, Math.ceil((d - Date.now()) / 1000));
    }
    return " (retry in " + n + " s)";
  }

  function isNum(v) { return typeof v === "number" && isFinite(v); }

  function compact(n) {
    if (!isNum(n) || Math.abs(n) < 10000) return "";
    var units = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(n) >= units[i][0]) {
        return (n / units[i][0]).toFixed(n / units[i][0] >= 100 ? 0 : 1) + " " + units[i][1];
      }
    }
    return "";
  }

  function bytes(n) {
    if (!isNum(n)) return "—";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(n >= 100 ? 0 : 1)) + " " + units[i];
  }

  function duration(s) {
    if (!isNum(s) || s < 0) return "—";
    s = Math.floor(s);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
      m = Math.floor(s % 3600 / 60), sec = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + sec + "s";
    return sec + "s";
  }

  // parseTime returns ms since the epoch, or NaN for a missing or zero time.
  function parseTime(v) {
    if (typeof v !== "string" || !v) return NaN;
    var t = Date.parse(v);
    if (isNaN(t) || t < Date.UTC(2000, 0, 1)) return NaN;
    return t;
  }

  function setTime(node, iso) {
    var t = parseTime(iso);
    if (isNaN(t)) {
      node.removeAttribute("datetime");
      setText(node, "—");
      return;
    }
    node.setAttribute("datetime", iso);
    node.title = new Date(t).toISOString();
    setText(node, new Date(t).toLocaleTimeString());
  }

  function cssVar(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  // ---- login and logout ---------------------------------------------------

  function showLogin(message) {
    stop();
    show(el.dashboard, false);
    show(el.logout, false);
    show(el.conn, false);
    show(el.login, true);
    if (message) {
      setText(el.loginError, message);
      show(el.loginError, true);
    }
    el.token.focus();
  }

  function loginError(message) {
    setText(el.loginError, message);
    show(el.loginError, true);
    el.token.focus();
    el.token.select();
  }

  el.form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var token = el.token.value;
    if (!token) { loginError("token is required"); return; }
    el.submit.disabled = true;
    req("/admin/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: token })
    }).then(function (res) {
      if (res.ok) {
        el.token.value = "";
        show(el.loginError, false);
        setText(el.loginError, "");
        return start(true);
      }
      return errorMessage(res).then(function (msg) {
        loginError(res.status === 429 ? msg + retryAfter(res) : msg);
      });
    }, function () {
      loginError("cannot reach the server");
    }).then(function () { el.submit.disabled = false; });
  });

  el.logout.addEventListener("click", function () {
    el.logout.disabled = true;
    stop(); // nothing of the dashboard may run into the ended session
    req("/admin/logout", { method: "POST" }).then(function (res) {
      if (!res.ok && res.status !== 401) {
        return errorMessage(res).then(function (msg) { showLogin("logout: " + msg); });
      }
      showLogin();
    }, function () {
      showLogin("logout: cannot reach the server");
    }).then(function () { el.logout.disabled = false; });
  });

  // ---- start and stop -----------------------------------------------------

  // start loads the overview: 401 shows the login form, 200 the dashboard.
  // afterLogin says a login just succeeded, so a 401 means the browser did
  // not keep the cookie.
  function start(afterLogin) {
    var gen = ++generation;
    return req(API + "overview").then(function (res) {
      if (gen !== generation) return null;
      if (res.status === 401) {
        showLogin(afterLogin ? "logged in, but the browser did not keep the session cookie" +
          " (a Secure cookie over plain HTTP?)" : "");
        return null;
      }
      if (res.status === 429) {
        return errorMessage(res).then(function (msg) { showLogin(msg + retryAfter(res)); });
      }
      if (!res.ok) {
        return errorMessage(res).then(function (msg) { startFailed("overview: " + msg); });
      }
      return res.json().then(function (o) {
        if (gen !== generation) return;
        run(o);
      });
    }, function () {
      if (gen === generation) startFailed("cannot reach the server; retrying");
    });
  }

  function startFailed(msg) {
    setText(el.pageError, msg);
    show(el.pageError, true);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(function () { start(false); }, 5000);
  }

  function run(overview) {
    stop();
    running = true;
    aborter = typeof AbortController !== "undefined" ? new AbortController() : null;
    var gen = generation;
    show(el.pageError, false);
    show(el.login, false);
    show(el.loginError, false);
    show(el.dashboard, true);
    show(el.logout, true);
    show(el.conn, true);
    setConn("disconnected", "connecting…");
    renderOverview(overview);
    ensurePlot();
    onResize(); // the window may have changed while the dashboard was hidden
    loadHistory(range);
    openStream(gen);
    pollLoad(gen);
  }

  function stop() {
    running = false;
    generation++;
    if (stream) { stream.close(); stream = null; }
    if (aborter) { aborter.abort(); aborter = null; }
    clearTimeout(reopenTimer);
    clearTimeout(loadTimer);
    clearTimeout(historyTimer);
    clearTimeout(retryTimer);
    checking = false;
    live = [];
    hist = { range: "", xs: [], users: [], conns: [] };
  }

  // ---- overview and the live stream ---------------------------------------

  function renderOverview(o) {
    var metrics = document.querySelectorAll("[data-metric]");
    for (var i = 0; i < metrics.length; i++) {
      var v = o[metrics[i].getAttribute("data-metric")];
      setText(metrics[i], isNum(v) ? String(v) : "—");
    }
    var fmts = document.querySelectorAll("[data-metric-fmt]");
    for (var j = 0; j < fmts.length; j++) {
      setText(fmts[j], compact(o[fmts[j].getAttribute("data-metric-fmt")]));
    }
    var source = typeof o.source === "string" && o.source ? o.source : "unknown";
    var fallback = source === "mongodb" || source === "sqlite";
    var parts = [];
    if (fallback) parts.push("Fallback: numbers from " + source);
    if (o.stale === true) parts.push("stale: user figures from an older snapshot");
    setText(el.badge, parts.join(" · "));
    el.badge.setAttribute("data-fallback", String(fallback));
    el.badge.setAttribute("data-stale", String(o.stale === true));
    show(el.badge, parts.length > 0);
    setText(el.source, source);
    el.source.setAttribute("data-source", source);
    setTime(el.generatedAt, o.generatedAt);
  }

  function setConn(state, text) {
    el.conn.setAttribute("data-state", state);
    setText(el.conn, text);
  }

  function openStream(gen, reopened) {
    if (gen !== generation) return;
    if (stream) stream.close();
    var es = new EventSource(API + "stream");
    var broken = reopened === true;
    stream = es;
    es.addEventListener("open", function () {
      if (stream !== es) return;
      setConn("live", "live");
      // points missed while disconnected: the 1h chart reloads its history
      if (broken && range === "1h") loadHistory(range);
      broken = false;
    });
    es.addEventListener("overview", function (ev) {
      if (stream !== es) return;
      var o;
      try { o = JSON.parse(ev.data); } catch (e) { return; }
      setConn("live", "live");
      renderOverview(o);
      addLivePoint(o);
    });
    es.addEventListener("error", function () {
      if (stream !== es) return;
      broken = true;
      setConn("disconnected", "disconnected — reconnecting");
      checkSession(gen, es);
    });
  }

  // checkSession runs after a stream error: EventSource retries by itself
  // after network errors, but gives up (CLOSED) on an HTTP error such as
  // the 401 of an expired session. An overview fetch tells which it was.
  function checkSession(gen, es) {
    if (checking) return;
    checking = true;
    req(API + "overview", null, true).then(function (res) {
      if (gen !== generation) return;
      if (res.status === 401) {
        showLogin("session expired; log in again");
        return;
      }
      if (res.ok) {
        return res.json().then(function (o) {
          if (gen === generation) renderOverview(o);
        }, function () {});
      }
    }, function () { /* server unreachable: keep retrying */ }).then(function () {
      if (gen !== generation) return;
      checking = false;
      if (es.readyState === EventSource.CLOSED && stream === es) {
        clearTimeout(reopenTimer);
        reopenTimer = setTimeout(function () { openStream(gen, true); }, 3000);
      }
    });
  }

  // ---- chart --------------------------------------------------------------

  function integerIncrs() {
    var out = [];
    for (var p = 1; p <= 1e12; p *= 10) out.push(p, 2 * p, 5 * p);
    return out;
  }

  function plotOpts(width) {
    var axis = cssVar("--muted", "#666");
    var grid = cssVar("--grid", "rgba(0,0,0,0.08)");
    return {
      width: width,
      height: plotHeight(),
      cursor: { drag: { x: false, y: false } },
      scales: {
        // the whole range chosen, ending now, however few points there are
        x: { time: true, range: function (u, min, max) {
          var end = Math.max(Date.now() / 1000, isNum(max) ? max : 0);
          return [end - (SPANS[range] || LIVE_WINDOW_S), end];
        } },
        y: { range: function (u, min, max) { return [0, Math.max(1, Math.ceil(max * 1.1))]; } }
      },
      series: [
        {},
        { label: "Online users", stroke: cssVar("--chart-users", "#2563eb"), width: 2,
          fill: cssVar("--chart-users-fill", "rgba(37,99,235,0.1)") },
        { label: "Connections", stroke: cssVar("--chart-conns", "#16a34a"), width: 2 }
      ],
      axes: [
        { stroke: axis, grid: { stroke: grid }, ticks: { stroke: grid } },
        { stroke: axis, grid: { stroke: grid }, ticks: { stroke: grid }, incrs: integerIncrs(), size: 56 }
      ]
    };
  }

  function plotWidth() { return Math.max(200, el.chart.clientWidth); }

  function plotHeight() { return window.innerWidth < 600 ? 220 : 300; }

  function ensurePlot() {
    if (plot) return;
    if (typeof uPlot === "undefined") {
      chartFailed("the chart library did not load");
      return;
    }
    plot = new uPlot(plotOpts(plotWidth()), chartData(), el.chart);
  }

  function rebuildPlot() {
    if (!plot) return;
    plot.destroy();
    plot = null;
    ensurePlot();
  }

  var resizeQueued = false;
  function onResize() {
    if (resizeQueued) return;
    resizeQueued = true;
    requestAnimationFrame(function () {
      resizeQueued = false;
      if (plot && !el.dashboard.hidden) plot.setSize({ width: plotWidth(), height: plotHeight() });
    });
  }
  window.addEventListener("resize", onResize);
  if (typeof ResizeObserver !== "undefined") new ResizeObserver(onResize).observe(el.chart);
  if (window.matchMedia) {
    var dark = window.matchMedia("(prefers-color-scheme: dark)");
    var onScheme = function () { rebuildPlot(); };
    if (dark.addEventListener) dark.addEventListener("change", onScheme);
    else if (dark.addListener) dark.addListener(onScheme);
  }

  function chartData() {
    var xs = hist.xs.slice(), users = hist.users.slice(), conns = hist.conns.slice();
    if (range === "1h") {
      var last = xs.length ? xs[xs.length - 1] : -Infinity;
      for (var i = 0; i < live.length; i++) {
        if (live[i][0] > last) {
          xs.push(live[i][0]); users.push(live[i][1]); conns.push(live[i][2]);
          last = live[i][0];
        }
      }
      var from = Date.now() / 1000 - LIVE_WINDOW_S, k = 0;
      while (k < xs.length && xs[k] < from) k++;
      if (k) { xs = xs.slice(k); users = users.slice(k); conns = conns.slice(k); }
    }
    return [xs, users, conns];
  }

  function redraw() { if (plot) plot.setData(chartData()); }

  function addLivePoint(o) {
    if (!isNum(o.onlineUsers) || !isNum(o.onlineConnections)) return;
    var ms = parseTime(o.generatedAt);
    var t = (isNaN(ms) ? Date.now() : ms) / 1000;
    if (live.length && t <= live[live.length - 1][0]) return; // keep x ascending
    live.push([t, o.onlineUsers, o.onlineConnections]);
    var from = t - LIVE_WINDOW_S, k = 0;
    while (k < live.length && live[k][0] < from) k++;
    if (k) live = live.slice(k);
    if (range === "1h") redraw();
  }

  function setRange(r) {
    range = r;
    el.ranges.forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-range") === r));
    });
    if (running) loadHistory(r);
  }

  el.ranges.forEach(function (b) {
    b.addEventListener("click", function () { setRange(b.getAttribute("data-range")); });
  });

  function loadHistory(r) {
    var seq = ++historySeq, gen = generation;
    clearTimeout(historyTimer);
    el.chart.setAttribute("aria-busy", "true");
    req(API + "history?range=" + encodeURIComponent(r), null, true).then(function (res) {
      if (seq !== historySeq || gen !== generation) return;
      if (res.status === 401) { showLogin("session expired; log in again"); return; }
      if (!res.ok) {
        return errorMessage(res).then(function (msg) { chartFailed("history: " + msg); });
      }
      return res.json().then(function (h) {
        if (seq !== historySeq || gen !== generation) return;
        var xs = [], users = [], conns = [];
        var pts = h && Array.isArray(h.points) ? h.points : [];
        for (var i = 0; i < pts.length; i++) {
          var t = parseTime(pts[i].t);
          if (isNaN(t)) continue;
          t /= 1000;
          if (xs.length && t <= xs[xs.length - 1]) continue;
          xs.push(t);
          users.push(isNum(pts[i].onlineUsers) ? pts[i].onlineUsers : null);
          conns.push(isNum(pts[i].onlineConnections) ? pts[i].onlineConnections : null);
        }
        hist = { range: r, xs: xs, users: users, conns: conns };
        show(el.chartError, false);
        el.chart.setAttribute("aria-label", "Line chart of online users and connections, last " +
          r + ", " + xs.length + " points");
        redraw();
      });
    }, function () {
      if (seq === historySeq && gen === generation) chartFailed("history: cannot reach the server");
    }).then(function () {
      if (seq !== historySeq || gen !== generation) return;
      el.chart.removeAttribute("aria-busy");
      // the 1h chart moves with the stream; the others get new buckets now and then
      if (r !== "1h" || el.chartError.hidden === false) {
        historyTimer = setTimeout(function () { if (range === r) loadHistory(r); }, HISTORY_REFRESH_MS);
      }
    });
  }

  function chartFailed(msg) {
    setText(el.chartError, msg);
    show(el.chartError, true);
  }

  // ---- nodes (server-load, polled every 5 s) -------------------------------

  function pollLoad(gen) {
    if (gen !== generation) return;
    req(API + "server-load", null, true).then(function (res) {
      if (gen !== generation) return;
      if (res.status === 401) { showLogin("session expired; log in again"); return; }
      if (!res.ok) {
        return errorMessage(res).then(function (msg) { loadFailed("server load: " + msg); });
      }
      return res.json().then(function (s) {
        if (gen !== generation) return;
        show(el.nodesError, false);
        renderLoad(s);
      });
    }, function () {
      if (gen === generation) loadFailed("server load: cannot reach the server");
    }).then(function () {
      if (gen !== generation) return;
      clearTimeout(loadTimer);
      loadTimer = setTimeout(function () { pollLoad(gen); }, LOAD_INTERVAL_MS);
    });
  }

  function loadFailed(msg) {
    setText(el.nodesError, msg);
    show(el.nodesError, true);
  }

  function cell(tr, col, text, cls) {
    var td = document.createElement("td");
    td.setAttribute("data-col", col);
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function str(v) { return typeof v === "string" && v ? v : "—"; }

  function numText(v) { return isNum(v) ? String(v) : "—"; }

  function ago(ms, now) {
    if (isNaN(ms)) return "—";
    var s = Math.max(0, Math.round((now - ms) / 1000));
    return s < 1 ? "just now" : duration(s) + " ago";
  }

  function renderLoad(s) {
    var now = Date.now();
    var nodes = Array.isArray(s.nodes) ? s.nodes : [];
    var frag = document.createDocumentFragment();
    nodes.forEach(function (n) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-node", str(n.id));
      tr.setAttribute("data-healthy", String(n.healthy === true));
      var idCell = cell(tr, "id", str(n.id), "mono");
      if (isNum(n.pid)) idCell.title = "pid " + n.pid;
      cell(tr, "host", str(n.host));
      cell(tr, "version", str(n.version), "mono");
      cell(tr, "connections", numText(n.connections), "num");
      cell(tr, "users", numText(n.users), "num");
      cell(tr, "cpuPercent", isNum(n.cpuPercent) ? n.cpuPercent.toFixed(1) + " %" : "—", "num");
      cell(tr, "memoryBytes", bytes(n.memoryBytes), "num").title = numText(n.memoryBytes) + " bytes";
      var started = parseTime(n.startedAt);
      var up = !isNaN(started) ? (now - started) / 1000 : n.uptimeSeconds;
      var upCell = cell(tr, "uptime", duration(up));
      if (!isNaN(started)) upCell.title = "started " + new Date(started).toISOString();
      var hb = parseTime(n.lastHeartbeat);
      var hbCell = cell(tr, "lastHeartbeat", ago(hb, now));
      if (!isNaN(hb)) hbCell.title = new Date(hb).toISOString();
      cell(tr, "healthy", n.healthy === true ? "yes" : "no",
        n.healthy === true ? "healthy" : "unhealthy");
      frag.appendChild(tr);
    });
    if (!nodes.length) {
      var tr = document.createElement("tr");
      var td = cell(tr, "empty", "No node is reporting.", "empty");
      td.colSpan = 10;
      frag.appendChild(tr);
    }
    el.nodesBody.textContent = "";
    el.nodesBody.appendChild(frag);

    var redis = s.redis && typeof s.redis === "object" ? s.redis : null;
    renderDep(el.redisStatus, el.redisLatency, redis);
    setText(el.redisMemory, redis && isNum(redis.usedMemoryBytes) ? bytes(redis.usedMemoryBytes) + " used" : "");
    var ds = s.dataStore && typeof s.dataStore === "object" ? s.dataStore : null;
    var kind = ds ? ds.kind : "";
    if (!ds && s.mongodb && typeof s.mongodb === "object" && s.mongodb.status !== "not_configured") {
      ds = s.mongodb; // older servers: no dataStore field
      kind = "mongodb";
    }
    renderDep(el.dsStatus, el.dsLatency, ds);
    setText(el.dsKind, typeof kind === "string" && kind ? kind : "");
    setTime(el.loadGeneratedAt, s.generatedAt);
  }

  function renderDep(statusEl, latencyEl, dep) {
    var status = dep && typeof dep.status === "string" && dep.status ? dep.status : "unknown";
    statusEl.setAttribute("data-status", status);
    setText(statusEl, status === "not_configured" ? "not configured" : status);
    statusEl.title = dep && typeof dep.error === "string" ? dep.error : "";
    setText(latencyEl, dep && isNum(dep.latencyMs) ? dep.latencyMs.toFixed(1) + " ms" : "");
  }

  // ---- boot ---------------------------------------------------------------

  // A plain form login that failed comes back as /admin/?error=...
  var params = new URLSearchParams(location.search);
  var formError = params.get("error");
  if (formError !== null && window.history && history.replaceState) {
    history.replaceState(null, "", location.pathname);
  }
  show(el.login, false);
  start(false).then(function () {
    if (formError && !el.login.hidden) {
      setText(el.loginError, formError);
      show(el.loginError, true);
    }
  });
})();

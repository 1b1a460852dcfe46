// edgecnn live dashboard: no framework, no CDN; text is set with textContent only (labels are data).
(function () {
  "use strict";
  var token = new URLSearchParams(location.search).get("token");
  var q = token ? "?token=" + encodeURIComponent(token) : "";
  var $ = function (id) { return document.getElementById(id); };
  var history = [];          // one point a second: {fps, inf, tot}
  var HISTORY = 120;
  var lastFrameAt = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function ms(v) { return v === undefined ? "–" : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0); }

  function showTop(latest) {
    if (!latest) return;
    lastFrameAt = Date.now();
    $("frame-id").textContent = "frame " + latest.frame + (latest.name ? " · " + latest.name : "");
    var ol = $("top");
    var rows = [];
    (latest.top || []).forEach(function (t) {
      var li = el("li");
      var pct = 100 * t.prob;
      li.appendChild(el("span", "label", t.label));
      var bar = el("span", "bar"), fill = el("i");
      fill.style.width = Math.max(0, Math.min(100, pct)).toFixed(1) + "%";
      bar.appendChild(fill);
      li.appendChild(bar);
      li.appendChild(el("span", "pct", pct.toFixed(1) + "%"));
      rows.push(li);
    });
    ol.replaceChildren.apply(ol, rows);
  }

  function showStats(s) {
    $("fps").textContent = s.fps.toFixed(1);
    $("frames").textContent = s.frames;
    $("dropped").textContent = s.dropped;
    $("uptime").textContent = s.uptime_s < 120 ? Math.round(s.uptime_s) + " s" : Math.round(s.uptime_s / 60) + " min";
    $("window").textContent = s.window_frames;
    $("age").textContent = s.age_ms ? ms(s.age_ms.p50) + " / " + ms(s.age_ms.p99) : "–";
    var srcBody = $("sources").tBodies[0], srcRows = [];
    (s.sources || []).forEach(function (src) {
      var tr = el("tr");
      var state = src.state + (src.state !== "live" && src.for_s !== undefined ? " " + Math.round(src.for_s) + " s" : "");
      [src.source, state, src.fps.toFixed(1), src.age_ms ? ms(src.age_ms.p50) : "–", String(src.dropped)]
        .forEach(function (v) { tr.appendChild(el("td", "", v)); });
      tr.className = src.state === "live" ? "" : "down";
      srcRows.push(tr);
    });
    srcBody.replaceChildren.apply(srcBody, srcRows);
    var order = ["capture", "preprocess", "inference", "postprocess", "render", "total", "wait"];
    var names = Object.keys(s.stages).sort(function (a, b) {
      var ia = order.indexOf(a), ib = order.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    });
    var body = $("stages").tBodies[0], rows = [];
    names.forEach(function (k) {
      var st = s.stages[k], tr = el("tr");
      [k, ms(st.p50), ms(st.p90), ms(st.p99)].forEach(function (v) { tr.appendChild(el("td", "", v)); });
      rows.push(tr);
    });
    body.replaceChildren.apply(body, rows);
    var r = s.running || {}, dl = $("running"), items = [];
    $("model").textContent = r.name || "live";
    document.title = "edgecnn · " + (r.name || "live");
    [["model", r.name], ["backend", [r.backend, r.version].filter(Boolean).join(" ")], ["artifact", r.artifact],
     ["precision", r.precision], ["threads", r.threads || "default"], ["device", r.device],
     ["profile", r.profile], ["source", r.source],
     ["viewers", s.viewers ? s.viewers.stream + " stream, " + s.viewers.events + " events (max " + s.viewers.max + ")" : ""]]
      .forEach(function (kv) {
        if (kv[1] === undefined || kv[1] === null || kv[1] === "") return;
        items.push(el("dt", "", kv[0]));
        items.push(el("dd", "", String(kv[1])));
      });
    dl.replaceChildren.apply(dl, items);
    // "processing": the stages after capture (capture is mostly waiting for the camera's next frame)
    var proc = 0, any = false;
    names.forEach(function (k) {
      if (k !== "capture" && k !== "total" && k !== "wait") { proc += s.stages[k].p50; any = true; }
    });
    history.push({ fps: s.fps, inf: (s.stages.inference || {}).p50, tot: any ? proc : undefined });
    if (history.length > HISTORY) history.shift();
    drawChart();
    if (s.latest && !window.EventSource) showTop(s.latest);
  }

  function drawChart() {
    var c = $("chart"), dpr = window.devicePixelRatio || 1;
    var w = c.clientWidth || 360, h = c.clientHeight || 140;
    if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
    var g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    var pad = 16, maxFps = 1, maxMs = 0.001;
    history.forEach(function (p) {
      maxFps = Math.max(maxFps, p.fps || 0);
      maxMs = Math.max(maxMs, p.inf || 0, p.tot || 0);
    });
    maxFps *= 1.15; maxMs *= 1.15;
    g.strokeStyle = "#2a323b"; g.lineWidth = 1;
    for (var i = 0; i <= 4; i++) {
      var y = pad + (h - 2 * pad) * i / 4;
      g.beginPath(); g.moveTo(0, y); g.lineTo(w, y); g.stroke();
    }
    function line(key, max, color) {
      g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
      var started = false;
      history.forEach(function (p, i) {
        var v = p[key];
        if (v === undefined) return;
        var x = w * i / (Math.max(30, history.length) - 1), y = h - pad - (h - 2 * pad) * v / max;
        if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
      });
      g.stroke();
    }
    line("fps", maxFps, "#4cc38a");
    line("inf", maxMs, "#f0a04b");
    line("tot", maxMs, "#6aa8ff");
    g.fillStyle = "#9aa7b4"; g.font = "11px system-ui, sans-serif";
    g.textAlign = "left"; g.fillText(Math.round(maxFps) + " FPS", 4, 12);
    g.textAlign = "right"; g.fillText(ms(maxMs) + " ms", w - 4, 12);
  }

  function pollStats() {
    fetch("api/stats" + q, { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(showStats).catch(function (e) {
      $("status").textContent = "no stats: " + e.message;
    }).finally(function () { setTimeout(pollStats, 1000); });
  }

  function pollLatest() {  // for browsers without EventSource, or when events are refused
    fetch("api/latest" + q, { cache: "no-store" }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) { if (j) showTop(j); }).catch(function () {})
      .finally(function () { setTimeout(pollLatest, 500); });
  }

  function listen() {
    if (!window.EventSource) { pollLatest(); return; }
    var es = new EventSource("api/events" + q), failures = 0;
    es.addEventListener("frame", function (ev) { failures = 0; showTop(JSON.parse(ev.data)); });
    es.onerror = function () {
      if (++failures >= 3) { es.close(); pollLatest(); }
    };
  }

  function startStream() {
    var img = $("stream"), note = $("stream-note");
    img.onerror = function () {
      note.hidden = false;
      note.textContent = "stream unavailable (viewer limit reached or run ended); retrying…";
      setTimeout(function () { img.src = "stream" + q + (q ? "&" : "?") + "t=" + Date.now(); }, 5000);
    };
    img.onload = function () { note.hidden = true; };
    img.src = "stream" + q;
  }

  setInterval(function () {
    var live = Date.now() - lastFrameAt < 3000;
    var s = $("status");
    s.className = "status" + (live ? " live" : "");
    if (live || lastFrameAt) s.textContent = live ? "live" : "no new frames";
  }, 500);

  startStream();
  listen();
  pollStats();
})();

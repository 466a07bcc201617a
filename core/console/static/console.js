// corral console: live updates. The server sends a notice over server-sent events when
// something on this page changed; this script fetches the page again and swaps its main
// part. Everything it inserts was rendered (and escaped) by the server.
(function () {
  "use strict";
  var main = document.getElementById("live");
  var dot = document.getElementById("live-state");
  if (!main || !window.EventSource) return;
  var run = main.getAttribute("data-run");
  var timer = null;
  var opened = false;

  function busy() {
    var active = document.activeElement;
    return active && main.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName) && active.value;
  }

  function refresh() {
    timer = null;
    if (busy()) { timer = setTimeout(refresh, 1000); return; }
    fetch(location.href, { headers: { "X-Corral-Fragment": "1" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401) { location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) { if (html) main.innerHTML = html; });
  }

  // A run's page hears of every step: it fetches at most once a second; other pages sooner.
  var delay = run ? 1000 : 250;
  function soon() { if (!timer) timer = setTimeout(refresh, delay); }

  var source = new EventSource("/live" + (run ? "?run=" + encodeURIComponent(run) : ""));
  source.addEventListener("open", function () {
    if (dot) dot.className = "live-dot on";
    if (opened) soon();  // reconnected: something may have changed meanwhile
    opened = true;
  });
  source.addEventListener("error", function () { if (dot) dot.className = "live-dot"; });
  source.addEventListener("change", soon);
})();

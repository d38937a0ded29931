/* The live log page: lines of one plugin over a WebSocket.
 * Plain script, no build step. The server sends {"type": "backlog", lines} on connect and after a
 * filter change (the view is replaced), then {"type": "lines", lines} for each live batch. */
(function () {
  "use strict";

  var LEVELS = ["debug", "info", "warning", "error"];
  var MAX_LINES = 5000; // lines kept in the page; older ones are removed
  var BACKOFF_MIN = 500;
  var BACKOFF_MAX = 30000;
  var STICKY_PX = 24; // "at the bottom" slack, so a half-line off still follows

  function start(root) {
    var wsPath = root.dataset.wsPath;
    var $ = function (sel) { return root.querySelector(sel); };
    var list = $(".gn-log-lines"), frame = $(".gn-log-frame"), empty = $(".gn-log-empty");
    var stateEl = $(".gn-log-state"), stateText = $(".gn-log-state-text");
    var levelSel = $(".gn-log-level"), search = $(".gn-log-search");
    var pauseBtn = $(".gn-log-pause"), clearBtn = $(".gn-log-clear"), jumpBtn = $(".gn-log-jump");
    var countEl = $(".gn-log-count"), droppedEl = $(".gn-log-dropped");

    var ws = null, backoff = BACKOFF_MIN, retryTimer = null, countdownTimer = null, closedForGood = false;
    var paused = false, held = [], autoscroll = true, unseen = 0, droppedTotal = 0;
    var filters = { min_level: 0, filter: "" };

    function setState(state, text) {
      stateEl.dataset.state = state;
      stateText.textContent = text;
      root.dataset.connection = state;
    }

    function wsUrl() {
      var proto = location.protocol === "https:" ? "wss://" : "ws://";
      var qs = "?min_level=" + filters.min_level + "&filter=" + encodeURIComponent(filters.filter);
      return proto + location.host + wsPath + qs;
    }

    function connect() {
      clearTimeout(retryTimer);
      clearInterval(countdownTimer);
      setState("connecting", "Connecting…");
      try {
        ws = new WebSocket(wsUrl());
      } catch (err) {
        scheduleReconnect();
        return;
      }
      ws.onmessage = function (ev) {
        var msg;
        try { msg = JSON.parse(ev.data); } catch (err) { return; }
        if (msg.type === "backlog") {
          backoff = BACKOFF_MIN; // a working connection resets the backoff
          setState("live", "Live");
          held = [];
          list.textContent = "";
          renderLines(msg.lines, true);
          updateCounts();
        } else if (msg.type === "lines") {
          if (paused) {
            held.push.apply(held, msg.lines);
            updateCounts();
          } else {
            renderLines(msg.lines, false);
          }
        }
      };
      ws.onclose = function (ev) {
        ws = null;
        if (ev.code === 4403) {
          closedForGood = true;
          setState("refused", "Not allowed: you need the “Can watch plugin logs” permission");
        } else if (ev.code === 4404) {
          closedForGood = true;
          setState("refused", "No such plugin");
        } else if (!closedForGood) {
          scheduleReconnect();
        }
      };
    }

    function scheduleReconnect() {
      var delay = Math.round(backoff * (0.8 + Math.random() * 0.4));
      backoff = Math.min(backoff * 2, BACKOFF_MAX);
      var until = Date.now() + delay;
      var tick = function () {
        var left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
        setState("reconnecting", "Disconnected · retry in " + left + " s");
      };
      tick();
      countdownTimer = setInterval(tick, 500);
      retryTimer = setTimeout(connect, delay);
    }

    function fmtTime(iso) {
      var d = new Date(iso);
      if (isNaN(d)) return iso;
      var pad = function (n, w) { return String(n).padStart(w || 2, "0"); };
      return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." +
        pad(d.getMilliseconds(), 3);
    }

    function appendText(el, text) {
      // Highlight the search term without ever parsing the message as HTML.
      var term = filters.filter;
      if (!term) { el.textContent = text; return; }
      var lower = text.toLowerCase(), needle = term.toLowerCase(), at = 0, i;
      while ((i = lower.indexOf(needle, at)) !== -1) {
        el.appendChild(document.createTextNode(text.slice(at, i)));
        var mark = document.createElement("mark");
        mark.textContent = text.slice(i, i + needle.length);
        el.appendChild(mark);
        at = i + needle.length;
      }
      el.appendChild(document.createTextNode(text.slice(at)));
    }

    function lineEl(line) {
      var li = document.createElement("li");
      var level = LEVELS[line.level] || "info";
      li.className = "gn-log-line gn-level-" + level + " gn-source-" + line.source;
      li.dataset.id = line.id;
      var t = document.createElement("time");
      t.className = "gn-log-time";
      t.dateTime = line.time;
      t.title = line.time;
      t.textContent = fmtTime(line.time);
      var lv = document.createElement("span");
      lv.className = "gn-log-lvl";
      lv.textContent = level;
      var src = document.createElement("span");
      src.className = "gn-log-src";
      src.textContent = line.source + (line.version ? " " + line.version : "");
      var msg = document.createElement("span");
      msg.className = "gn-log-msg";
      appendText(msg, line.message);
      li.append(t, lv, src, msg);
      if (line.dropped) {
        li.classList.add("gn-log-dropline");
        noteDropped(line);
      }
      return li;
    }

    function noteDropped(line) {
      droppedTotal += line.dropped;
      droppedEl.hidden = false;
      droppedEl.textContent = "⚠ " + droppedTotal.toLocaleString() + " line" + (droppedTotal === 1 ? "" : "s") +
        " dropped by the rate limit (the plugin logs faster than allowed; last report at " + fmtTime(line.time) + ").";
    }

    function renderLines(lines, replace) {
      if (!lines.length && !replace) return;
      var frag = document.createDocumentFragment();
      for (var i = 0; i < lines.length; i++) frag.appendChild(lineEl(lines[i]));
      list.appendChild(frag);
      while (list.childElementCount > MAX_LINES) list.removeChild(list.firstElementChild);
      showEmpty();
      if (autoscroll) {
        scrollToBottom();
      } else if (!replace) {
        unseen += lines.length;
        jumpBtn.hidden = false;
        jumpBtn.textContent = "↓ " + unseen + " new line" + (unseen === 1 ? "" : "s") + ": jump to the bottom";
      }
      updateCounts();
    }

    // With a level or a search chosen, "no lines" is about the filter, not the plugin.
    var emptyText = empty.textContent;
    function showEmpty() {
      empty.hidden = list.childElementCount > 0;
      empty.textContent = filters.min_level || filters.filter
        ? "No lines match the level or search chosen (the server keeps the rest). Lines that match appear here as the plugin logs."
        : emptyText;
    }

    function scrollToBottom() {
      frame.scrollTop = frame.scrollHeight;
      unseen = 0;
      jumpBtn.hidden = true;
    }

    function updateCounts() {
      var shown = list.childElementCount;
      countEl.textContent = shown + " line" + (shown === 1 ? "" : "s") + (autoscroll ? "" : " · autoscroll off");
      pauseBtn.textContent = paused ? "Resume (" + held.length + " held)" : "Pause";
      pauseBtn.setAttribute("aria-pressed", paused ? "true" : "false");
      root.classList.toggle("gn-log-paused", paused);
    }

    frame.addEventListener("scroll", function () {
      var atBottom = frame.scrollHeight - frame.scrollTop - frame.clientHeight <= STICKY_PX;
      if (atBottom !== autoscroll) {
        autoscroll = atBottom;
        if (atBottom) { unseen = 0; jumpBtn.hidden = true; }
        updateCounts();
      }
    }, { passive: true });

    jumpBtn.addEventListener("click", function () { autoscroll = true; scrollToBottom(); updateCounts(); });

    pauseBtn.addEventListener("click", function () {
      paused = !paused;
      if (!paused && held.length) {
        var lines = held;
        held = [];
        renderLines(lines, false);
      }
      updateCounts();
    });

    clearBtn.addEventListener("click", function () {
      list.textContent = "";
      held = [];
      showEmpty();
      updateCounts();
    });

    function sendFilters() {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(filters));
    }

    levelSel.addEventListener("change", function () {
      filters.min_level = parseInt(levelSel.value, 10) || 0;
      sendFilters();
    });

    var searchTimer = null;
    search.addEventListener("input", function () {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () {
        if (filters.filter === search.value) return;
        filters.filter = search.value;
        sendFilters();
      }, 250);
    });

    // A dropped connection is noticed at once when the network comes back.
    window.addEventListener("online", function () { if (!ws && !closedForGood) { backoff = BACKOFF_MIN; connect(); } });

    updateCounts();
    connect();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("gn-log");
    if (root) start(root);
  });
})();

/* WakeDock's pages script (served from /assets/wakedock.js with its SRI hash; no inline code,
   no eval: CSP script-src 'self').
   On the services page: refresh each service's state, wake phase and timers in place by short
   polling of /services/live; send the row buttons' forms with fetch and show the answer without
   leaving the page; narrow the rows as the search box is typed in. Without this script the page
   still works: the forms post and come back, the filter form submits. */
(function () {
  "use strict";

  var table = document.getElementById("services");
  if (!table) {
    return;
  }
  var liveUrl = table.getAttribute("data-live");
  var notice = document.getElementById("notice");
  var awake = document.querySelector("[data-awake]");
  var maxAwake = document.querySelector("[data-max-awake]");
  var search = document.getElementById("q");
  // Poll fast while something moves (a wake, a stop), slowly otherwise.
  var FAST_MS = 1000;
  var SLOW_MS = 4000;
  var fastUntil = 0;
  var timer = null;

  function duration(seconds) {
    if (seconds === null || seconds === undefined || seconds === "") {
      return "\u2014";
    }
    var s = Math.max(0, Math.round(Number(seconds)));
    if (s < 60) {
      return s + " s";
    }
    if (s < 3600) {
      return Math.floor(s / 60) + " min " + (s % 60) + " s";
    }
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function ago(iso) {
    if (!iso) {
      return "never";
    }
    var seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (!isFinite(seconds)) {
      return "never";
    }
    return seconds < 5 ? "just now" : duration(seconds) + " ago";
  }

  function rowOf(name) {
    var rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i += 1) {
      if (rows[i].getAttribute("data-service") === name) {
        return rows[i];
      }
    }
    return null;
  }

  function field(row, name) {
    return row.querySelector('[data-field="' + name + '"]');
  }

  function setBadge(element, value) {
    if (element && element.textContent !== value) {
      element.textContent = value;
      element.setAttribute("data-value", value);
    }
  }

  function showTimers() {
    var stamps = table.querySelectorAll('[data-field="last_activity"]');
    for (var i = 0; i < stamps.length; i += 1) {
      stamps[i].textContent = ago(stamps[i].getAttribute("data-at"));
    }
    var idles = table.querySelectorAll('[data-field="idle_left_s"]');
    for (var j = 0; j < idles.length; j += 1) {
      idles[j].textContent = duration(idles[j].getAttribute("data-seconds"));
    }
  }

  function apply(data) {
    var moving = false;
    Object.keys(data.services).forEach(function (name) {
      var live = data.services[name];
      var row = rowOf(name);
      if (!row) {
        return;
      }
      setBadge(field(row, "state"), live.state);
      setBadge(field(row, "phase"), live.phase);
      field(row, "last_activity").setAttribute("data-at", live.last_activity || "");
      var idle = live.idle_left_s === null ? "" : String(live.idle_left_s);
      field(row, "idle_left_s").setAttribute("data-seconds", idle);
      field(row, "time_to_ready_s").textContent =
        live.time_to_ready_s === null ? "\u2014" : live.time_to_ready_s.toFixed(2) + " s";
      moving = moving || live.phase === "waking" || live.phase === "stopping" ||
        live.state === "stopping";
    });
    if (awake) {
      awake.textContent = String(data.awake);
    }
    if (maxAwake) {
      maxAwake.textContent = String(data.max_awake);
    }
    if (moving) {
      fastUntil = Date.now() + 5000;
    }
    showTimers();
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(poll, Date.now() < fastUntil ? FAST_MS : SLOW_MS);
  }

  function poll() {
    fetch(liveUrl, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (answer) {
        if (answer.status === 401) {
          window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
          return null;
        }
        return answer.ok ? answer.json() : null;
      })
      .then(function (data) {
        if (data) {
          apply(data);
        }
      })
      .catch(function () {
        /* The server may be restarting: the next poll tries again. */
      })
      .then(schedule);
  }

  function say(message, failed) {
    notice.textContent = message;
    notice.className = failed ? "notice error" : "notice";
  }

  table.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("action")) {
      return;
    }
    event.preventDefault();
    // The button pressed names the action (its formaction); the form holds the CSRF token.
    var button = event.submitter || form.querySelector("button");
    var target = button.getAttribute("formaction") || form.getAttribute("action");
    button.disabled = true;
    fastUntil = Date.now() + 60000;
    fetch(target, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    })
      .then(function (answer) {
        return answer.json().then(
          function (body) {
            say(body.detail || "Done.", !answer.ok);
          },
          function () {
            say("The server answered " + answer.status + ".", true);
          }
        );
      })
      .catch(function () {
        say("WakeDock could not be reached. Try again.", true);
      })
      .then(function () {
        button.disabled = false;
        poll();
      });
  });

  function narrow() {
    var term = search.value.trim().toLowerCase();
    var rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i += 1) {
      var name = rows[i].getAttribute("data-service") || "";
      var title = rows[i].getAttribute("data-title") || "";
      rows[i].hidden = term !== "" && name.indexOf(term) < 0 && title.indexOf(term) < 0;
    }
  }

  if (search) {
    search.addEventListener("input", narrow);
  }
  showTimers();
  setInterval(function () {
    var idles = table.querySelectorAll('[data-field="idle_left_s"]');
    for (var i = 0; i < idles.length; i += 1) {
      var left = idles[i].getAttribute("data-seconds");
      if (left !== "" && left !== null && Number(left) > 0) {
        idles[i].setAttribute("data-seconds", String(Number(left) - 1));
      }
    }
    showTimers();
  }, 1000);
  schedule();
})();

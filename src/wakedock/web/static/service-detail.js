/* A service's page (served from /assets/service-detail.js with its SRI hash; no inline code,
   no eval: CSP script-src 'self').
   Refresh the page's live part (state, phase, timers, charts: an HTML fragment the server drew)
   every 5 s, and the log tail every 2 s (its text set as text, never parsed as markup); send
   the buttons' forms with fetch and show the answer in place. Without this script the page
   still shows everything as of its loading, and the buttons post and come back to the list. */
(function () {
  "use strict";

  var root = document.getElementById("service");
  if (!root) {
    return;
  }
  var LIVE_MS = 5000;
  var LOG_MS = 2000;
  var liveUrl = root.getAttribute("data-live");
  var log = document.getElementById("log-tail");
  var notice = document.getElementById("notice");
  var liveTimer = null;

  function signIn() {
    window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
  }

  function get(url, accept) {
    return fetch(url, {
      headers: { Accept: accept },
      credentials: "same-origin",
      cache: "no-store",
    }).then(function (answer) {
      if (answer.status === 401) {
        signIn();
        return null;
      }
      return answer.ok ? answer : null;
    });
  }

  function pollLive() {
    clearTimeout(liveTimer);
    get(liveUrl, "text/html")
      .then(function (answer) {
        return answer ? answer.text() : null;
      })
      .then(function (html) {
        if (!html) {
          return;
        }
        // The fragment is the server's own template output (escaped there); its nodes
        // replace the old part, no script in it would run.
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var old = document.getElementById("live");
        if (fresh && old) {
          old.replaceWith(document.importNode(fresh, true));
        }
      })
      .catch(function () {
        /* The server may be restarting: the next poll tries again. */
      })
      .then(function () {
        liveTimer = setTimeout(pollLive, LIVE_MS);
      });
  }

  function atEnd(element) {
    return element.scrollTop + element.clientHeight >= element.scrollHeight - 4;
  }

  function pollLog() {
    get(log.getAttribute("data-src"), "application/json")
      .then(function (answer) {
        return answer ? answer.json() : null;
      })
      .then(function (body) {
        if (!body || !body.lines) {
          return;
        }
        var follow = atEnd(log);
        var text = body.lines.join("\n");
        if (log.textContent !== text) {
          log.textContent = text;
        }
        log.setAttribute("data-lines", String(body.lines.length));
        if (follow) {
          log.scrollTop = log.scrollHeight;
        }
      })
      .catch(function () {
        /* As above: try again at the next poll. */
      })
      .then(function () {
        setTimeout(pollLog, LOG_MS);
      });
  }

  root.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("action")) {
      return;
    }
    event.preventDefault();
    var button = event.submitter || form.querySelector("button");
    var target = button.getAttribute("formaction") || form.getAttribute("action");
    button.disabled = true;
    fetch(target, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    })
      .then(function (answer) {
        return answer.json().then(
          function (body) {
            notice.textContent = body.detail || "Done.";
            notice.className = answer.ok ? "notice" : "notice error";
          },
          function () {
            notice.textContent = "The server answered " + answer.status + ".";
            notice.className = "notice error";
          }
        );
      })
      .catch(function () {
        notice.textContent = "WakeDock could not be reached. Try again.";
        notice.className = "notice error";
      })
      .then(function () {
        button.disabled = false;
        pollLive();
      });
  });

  if (log) {
    log.scrollTop = log.scrollHeight;
    setTimeout(pollLog, LOG_MS);
  }
  liveTimer = setTimeout(pollLive, LIVE_MS);
})();

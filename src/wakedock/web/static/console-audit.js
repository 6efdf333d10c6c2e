/* The admin console's audit trail (served from /assets/console-audit.js with its SRI hash; no
   inline code, no eval: CSP script-src 'self').
   On the newest page, ask every 3 s for the events after the newest one shown (rows the server
   drew, escaped there) and put them on top; the export links follow, so an export still holds
   exactly the view. While a chain check runs, refresh the chain's part every second (progress,
   then the result). Without this script the page shows everything as of its loading. */
(function () {
  "use strict";

  var TAIL_MS = 3000;
  var CHAIN_MS = 1000;
  var events = document.getElementById("events");
  var status = document.getElementById("tail-status");

  function signIn() {
    window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
  }

  function fragment(url) {
    return fetch(url, {
      headers: { Accept: "text/html" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (answer) {
        if (answer.status === 401) {
          signIn();
          return null;
        }
        return answer.ok ? answer.text() : null;
      })
      .then(function (html) {
        return html ? new DOMParser().parseFromString(html, "text/html") : null;
      });
  }

  function followExports(newest) {
    var links = document.querySelectorAll("a[data-export]");
    for (var i = 0; i < links.length; i += 1) {
      var url = new URL(links[i].href);
      url.searchParams.set("through", newest);
      links[i].href = url.pathname + url.search;
    }
  }

  function pollTail() {
    var newest = events.getAttribute("data-newest");
    var live = events.getAttribute("data-live");
    var url = live + (live.indexOf("?") < 0 ? "?" : "&") + "after=" + encodeURIComponent(newest);
    fragment(url)
      .then(function (doc) {
        var tail = doc && doc.getElementById("tail");
        if (!tail) {
          return;
        }
        var rows = tail.querySelectorAll("tr");
        var body = document.getElementById("rows");
        // Newest first in the fragment: insert from its oldest so the newest ends on top.
        for (var i = rows.length - 1; i >= 0; i -= 1) {
          body.insertBefore(document.importNode(rows[i], true), body.firstChild);
        }
        events.setAttribute("data-newest", tail.getAttribute("data-newest"));
        followExports(tail.getAttribute("data-newest"));
        if (rows.length) {
          var none = document.getElementById("no-events");
          if (none) {
            none.remove();
          }
          status.textContent = rows.length + " new event" + (rows.length === 1 ? "" : "s") + " added.";
        }
      })
      .catch(function () {
        /* The server may be restarting: the next poll tries again. */
      })
      .then(function () {
        setTimeout(pollTail, TAIL_MS);
      });
  }

  function pollChain() {
    fragment("/admin/audit/chain")
      .then(function (doc) {
        var fresh = doc && doc.getElementById("chain");
        var old = document.getElementById("chain");
        if (fresh && old) {
          old.replaceWith(document.importNode(fresh, true));
        }
      })
      .catch(function () {
        /* Tried again below. */
      })
      .then(function () {
        var chain = document.getElementById("chain");
        if (chain && chain.getAttribute("data-running") === "true") {
          setTimeout(pollChain, CHAIN_MS);
        }
      });
  }

  if (events && events.getAttribute("data-live")) {
    status.textContent = "Following new events.";
    setTimeout(pollTail, TAIL_MS);
  }
  var chain = document.getElementById("chain");
  if (chain && chain.getAttribute("data-running") === "true") {
    setTimeout(pollChain, CHAIN_MS);
  }
})();

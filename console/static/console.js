// The console's only script (no inline scripts are allowed by its content security policy).
// - [data-poll]: the element is replaced every data-every ms by the HTML its URL returns
//   (server-rendered, every record value escaped there), so new dead letters and a session's
//   progress appear without a reload; it stops while the page is hidden.
// - the token typed once is kept in this tab's sessionStorage and filled into action forms.
(function () {
  "use strict";
  function poll(el) {
    var url = el.getAttribute("data-poll");
    var every = parseInt(el.getAttribute("data-every") || "3000", 10);
    function tick() {
      if (document.hidden) { setTimeout(tick, every); return; }
      fetch(url, { headers: { "X-Console-Fragment": "1" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null) {
            el.innerHTML = html;
            el.setAttribute("data-updated", String(Date.now()));
          }
          setTimeout(tick, every);
        })
        .catch(function () { setTimeout(tick, every * 2); });
    }
    setTimeout(tick, every);
  }
  function tokens() {
    var saved = sessionStorage.getItem("tether-console-token");
    document.querySelectorAll('input[name="token"]').forEach(function (input) {
      if (saved && !input.value) { input.value = saved; }
      input.form.addEventListener("submit", function () {
        if (input.value) { sessionStorage.setItem("tether-console-token", input.value); }
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    tokens();
  });
})();

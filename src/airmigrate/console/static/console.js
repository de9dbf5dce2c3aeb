// airmigrate console: refreshes its content in place, posts the actions (same origin + CSRF token),
// and opens Airflow's own pages in the Airflow UI around it (the console runs in its iframe).
(function () {
  "use strict";
  var every = 1000 * (parseInt((document.querySelector('meta[name="airmigrate-refresh"]') || {}).content, 10) || 5);
  var busy = false;
  var last = null;  // the last fragment shown

  function cookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : "";
  }

  function theme() {  // follow Airflow's light/dark mode when it frames us
    try {
      var top = window.top.document.documentElement;
      var dark = top.classList.contains("dark") || top.getAttribute("data-theme") === "dark" ||
        (window.top.localStorage.getItem("chakra-ui-color-mode") === "dark");
      document.documentElement.setAttribute("data-theme", dark ? "dark" : "light");
    } catch (e) { /* not framed by Airflow */ }
  }

  function flash(text, bad) {
    var el = document.getElementById("flash");
    if (!el) return;
    el.textContent = text;
    el.className = bad ? "bad" : "";
  }

  function refresh() {
    if (busy || document.hidden) return;
    var active = document.activeElement;
    if (active && active.tagName === "INPUT") return;  // do not replace a form being filled in
    var url = window.location.pathname + (window.location.search ? window.location.search + "&" : "?") + "fragment=1";
    fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}}).then(function (r) {
      if (r.redirected || r.status === 401) { window.location.reload(); return null; }
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html === null || html === undefined || busy) return;
      var content = document.getElementById("content");
      if (content && html !== last) content.innerHTML = html;  // unchanged: the page is left as it is
      last = html;
      var stamp = document.getElementById("refresh-state");
      if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
    }).catch(function () { /* the next round tries again */ });
  }

  function act(migration, action, value, button) {
    busy = true;
    if (button) button.disabled = true;
    flash(action.replace("_", " ") + " ...", false);
    return fetch("/airmigrate/api/migrations/" + encodeURIComponent(migration) + "/actions/" + action, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-Airmigrate-CSRF": cookie("airmigrate_csrf")},
      body: JSON.stringify({value: value})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (r.ok && body.ok) flash(migration + ": " + body.message + " (as " + body.actor + ")", false);
        else flash(migration + ": " + (body.error || body.detail || ("HTTP " + r.status)), true);
      });
    }).catch(function (e) { flash(migration + ": " + e, true); })
      .then(function () { busy = false; if (button) button.disabled = false; refresh(); });
  }

  function ask(text, yes) {
    // Asked on the page itself: Airflow frames the console in a sandbox without allow-modals, where
    // window.confirm() returns false at once and shows nothing (a Cancel button would do nothing).
    var el = document.getElementById("flash");
    if (!el) { yes(); return; }
    el.className = "confirm";
    el.textContent = text + " ";
    var ok = document.createElement("button"), no = document.createElement("button");
    ok.type = no.type = "button";
    ok.className = "btn btn-confirm"; ok.textContent = "Yes";
    no.className = "btn btn-keep"; no.textContent = "No";
    ok.addEventListener("click", function () { el.textContent = ""; el.className = ""; yes(); });
    no.addEventListener("click", function () { el.textContent = ""; el.className = ""; });
    el.appendChild(ok); el.appendChild(document.createTextNode(" ")); el.appendChild(no);
    ok.focus();
  }

  function openInAirflow(href) {
    // Airflow's pages belong in the Airflow UI around us, not in our frame: navigate its router.
    try {
      if (window.top !== window && window.top.location.origin === window.location.origin) {
        window.top.history.pushState({}, "", href);
        window.top.dispatchEvent(new PopStateEvent("popstate", {state: {}}));
        return true;
      }
    } catch (e) { /* fall through */ }
    return false;
  }

  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("a[data-top]");
    if (link && !e.ctrlKey && !e.metaKey && !e.shiftKey && e.button === 0) {
      if (openInAirflow(link.getAttribute("href"))) e.preventDefault();
      return;
    }
    var button = e.target.closest && e.target.closest("button[data-action]");
    if (!button) return;
    var box = button.closest("[data-migration]");
    if (button.dataset.confirm) {
      ask(button.dataset.confirm, function () { act(box.dataset.migration, button.dataset.action, null, button); });
      return;
    }
    act(box.dataset.migration, button.dataset.action, null, button);
  });

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.dataset || !form.dataset.action) return;
    e.preventDefault();
    var input = form.querySelector("input[name=value]");
    var value = input && input.value !== "" ? input.value : null;
    if (input) input.blur();
    act(form.dataset.migration, form.dataset.action, value, form.querySelector("button"));
  });

  theme();
  window.setInterval(function () { theme(); refresh(); }, every);
})();

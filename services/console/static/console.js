// The console's only script. Every page works without it; with it, forms answer in
// place (keeping focus where the person was), the connect forms open one at a time,
// searches run as you type, a syncing connection refreshes itself, and Copy copies.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function announce(text) {
    var region = document.getElementById("announcer");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  function swap(doc, ids) {
    ids.forEach(function (id) {
      if (id === "main") {
        var fresh = doc.querySelector("main");
        if (fresh) document.querySelector("main").innerHTML = fresh.innerHTML;
        return;
      }
      var current = document.getElementById(id);
      var replacement = doc.getElementById(id);
      if (current && replacement) current.replaceWith(replacement);
    });
    var meta = doc.querySelector('meta[name="csrf-token"]');
    if (meta) document.querySelector('meta[name="csrf-token"]').content = meta.content;
  }

  function refocus(previousId) {
    var target = document.querySelector("main [data-focus]");
    if (!target && previousId) target = document.getElementById(previousId);
    if (target) target.focus();
    return target;
  }

  async function submit(form, submitter) {
    var button = submitter || form.querySelector('[type="submit"]');
    var slot = form.querySelector("[data-progress-slot]");
    var previousId = document.activeElement && document.activeElement.id;
    var body = new URLSearchParams(new FormData(form));
    if (submitter && submitter.name) body.append(submitter.name, submitter.value);
    if (button) button.disabled = true;
    form.setAttribute("aria-busy", "true");
    if (slot && form.dataset.progress) slot.textContent = form.dataset.progress;
    try {
      var response = await fetch(form.action, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf() },
      });
      var url = new URL(response.url);
      if (response.redirected && url.pathname !== window.location.pathname) {
        window.location.assign(response.url);
        return;
      }
      var doc = new DOMParser().parseFromString(await response.text(), "text/html");
      var ids = (form.dataset.swap || "main").split(/\s+/);
      if (!response.ok && ids.indexOf("main") < 0 && !ids.some(function (id) { return doc.getElementById(id); })) {
        ids = ["main"];
      }
      swap(doc, ids);
      enhance(document);
      var focused = refocus(previousId);
      var alert = document.querySelector("main [role=alert]");
      if (alert) announce(alert.textContent.trim());
      else if (focused && focused.getAttribute("role") === "switch") {
        announce(focused.textContent.trim() === "On" ? "Switched on" : "Switched off");
      } else {
        var status = document.querySelector("main .alert-notice");
        if (status) announce(status.textContent.trim());
      }
    } catch (error) {
      if (slot) slot.textContent = "The console did not answer. Check your connection and try again.";
      if (slot) slot.classList.add("done");
      if (button) button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  function openPanel(link) {
    var panel = document.getElementById(link.getAttribute("aria-controls"));
    if (!panel) return;
    var opening = panel.hasAttribute("data-collapsed");
    panel.toggleAttribute("data-collapsed", !opening);
    link.setAttribute("aria-expanded", opening ? "true" : "false");
    if (opening) {
      var first = panel.querySelector("input:not([type=hidden])");
      if (first) first.focus();
    }
  }

  var searchTimer = null;
  function liveSearch(form) {
    var input = form.querySelector('input[type="search"]');
    var target = form.dataset.liveSearch;
    input.addEventListener("input", function () {
      window.clearTimeout(searchTimer);
      searchTimer = window.setTimeout(async function () {
        var url = new URL(form.action);
        url.searchParams.set("q", input.value);
        var response = await fetch(url, { credentials: "same-origin" });
        var doc = new DOMParser().parseFromString(await response.text(), "text/html");
        swap(doc, [target]);
        enhance(document.getElementById(target) || document);
        history.replaceState(null, "", url.pathname + url.search);
      }, 250);
    });
  }

  function refresh(card) {
    var delay = parseInt(card.dataset.refresh, 10) || 1500;
    window.setTimeout(async function () {
      if (!document.body.contains(card)) return;
      var active = document.activeElement;
      if (card.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) {
        refresh(card);  // someone is typing in it: try again later
        return;
      }
      var focusedId = card.contains(active) ? active.id : null;
      var response = await fetch(window.location.pathname, { credentials: "same-origin" });
      var doc = new DOMParser().parseFromString(await response.text(), "text/html");
      var fresh = doc.getElementById(card.id);
      if (!fresh) return;
      card.replaceWith(fresh);
      enhance(fresh);
      if (focusedId && document.getElementById(focusedId)) document.getElementById(focusedId).focus();
      if (fresh.hasAttribute("data-refresh")) { fresh.dataset.watched = "1"; refresh(fresh); return; }
      announce("The models of " + fresh.querySelector("h4").firstChild.textContent.trim() + " are listed.");
    }, delay);
  }

  function enhance(root) {
    root.querySelectorAll("form[data-swap]").forEach(function (form) {
      if (form.dataset.enhanced) return;
      form.dataset.enhanced = "1";
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        submit(form, event.submitter);
      });
    });
    root.querySelectorAll("[data-toggle]").forEach(function (link) {
      if (link.dataset.enhanced) return;
      link.dataset.enhanced = "1";
      link.setAttribute("role", "button");
      link.addEventListener("click", function (event) { event.preventDefault(); openPanel(link); });
      link.addEventListener("keydown", function (event) {
        if (event.key === " ") { event.preventDefault(); openPanel(link); }
      });
    });
    root.querySelectorAll("form[data-live-search]").forEach(function (form) {
      if (form.dataset.enhanced) return;
      form.dataset.enhanced = "1";
      liveSearch(form);
    });
    root.querySelectorAll("[data-refresh]").forEach(function (card) {
      if (card.dataset.watched) return;
      card.dataset.watched = "1";
      refresh(card);
    });
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      if (button.dataset.enhanced) return;
      button.dataset.enhanced = "1";
      button.addEventListener("click", async function () {
        var field = document.getElementById(button.dataset.copy);
        var status = document.querySelector("[data-copy-status]");
        field.select();
        try {
          await navigator.clipboard.writeText(field.value);
          if (status) status.textContent = "Copied to the clipboard.";
        } catch (error) {
          if (status) status.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
        }
        if (status) status.classList.add("done");
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    enhance(document);
    var first = document.querySelector("main [data-focus]");
    if (first) first.focus();
  });
})();

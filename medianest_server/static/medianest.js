// MediaNest page enhancements: live updates over SSE, widget refresh, drag-and-drop order,
// confirmations, keyboard navigation of results, popups and polling (for sign-in flows that
// wait on another site). Every page works without this file.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function setUnread(count) {
  const badge = document.querySelector("[data-unread-badge]");
  if (!badge) return;
  badge.textContent = String(count);
  badge.hidden = count <= 0;
  badge.closest("a")?.setAttribute("aria-label", `Notifications, ${count} unread`);
}

async function refreshUnread() {
  const response = await fetch("/api/v1/notifications?per_page=1", {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
  if (response.ok) setUnread((await response.json()).unread);
}

async function refreshWidget(card) {
  const response = await fetch(`/dashboard/widgets/${card.dataset.widget}`, {
    headers: { Accept: "text/html" },
    credentials: "same-origin",
  });
  if (!response.ok) return;
  const template = document.createElement("template");
  template.innerHTML = (await response.text()).trim();
  const fresh = template.content.querySelector("[data-widget]");
  if (fresh) card.replaceWith(fresh);
}

function connectLive() {
  if (!document.body.dataset.live || !("EventSource" in window)) return;
  const source = new EventSource("/api/v1/events");
  const types = new Set(["core.notification.created", "core.stream.reset"]);
  for (const card of document.querySelectorAll("[data-refresh-on]")) {
    for (const type of card.dataset.refreshOn.split(" ").filter(Boolean)) types.add(type);
  }
  for (const type of types) {
    source.addEventListener(type, (message) => {
      if (type === "core.notification.created") {
        const badge = document.querySelector("[data-unread-badge]");
        setUnread(Number(badge?.textContent || 0) + 1);
      }
      // core.stream.reset: the server could not replay all we missed; reload what is shown
      const reset = type === "core.stream.reset";
      if (reset) refreshUnread();
      for (const card of document.querySelectorAll("[data-refresh-on]")) {
        if (reset || card.dataset.refreshOn.split(" ").includes(type)) refreshWidget(card);
      }
      document.dispatchEvent(new CustomEvent("medianest:event", { detail: JSON.parse(message.data) }));
    });
  }
  window.addEventListener("beforeunload", () => source.close());
}

function enableConfirmations() {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });
}

function enableWidgetDragging() {
  const list = document.querySelector("[data-widget-list]");
  if (!list) return;
  let dragged = null;
  list.addEventListener("dragstart", (event) => {
    dragged = event.target.closest("[data-widget-key]");
    dragged?.classList.add("dragging");
  });
  list.addEventListener("dragover", (event) => {
    event.preventDefault();
    const over = event.target.closest("[data-widget-key]");
    if (!dragged || !over || over === dragged) return;
    const after = event.clientY > over.getBoundingClientRect().top + over.offsetHeight / 2;
    over.parentNode.insertBefore(dragged, after ? over.nextSibling : over);
  });
  list.addEventListener("dragend", async () => {
    dragged?.classList.remove("dragging");
    dragged = null;
    const order = [...list.querySelectorAll("[data-widget-key]")].map((li) => li.dataset.widgetKey);
    await fetch("/api/v1/me/dashboard", {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ order }),
    });
  });
}

function enableResultKeys() {
  const results = document.querySelector("[data-search-results]");
  if (!results) return;
  results.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const links = [...results.querySelectorAll("a.result")];
    const index = links.indexOf(document.activeElement);
    const next = event.key === "ArrowDown" ? index + 1 : index - 1;
    if (links[next]) {
      links[next].focus();
      event.preventDefault();
    }
  });
}

// <a href="…" data-popup="URL" data-popup-name="NAME">: open URL in a small window. When the
// browser blocks popups the link is followed as usual (its href is the full-page fallback).
let popupWindow = null;

function enablePopups() {
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-popup]");
    if (!link) return;
    const opened = window.open(
      link.dataset.popup || link.href,
      link.dataset.popupName || "medianest-popup",
      "popup,width=600,height=720",
    );
    if (opened) {
      popupWindow = opened;
      event.preventDefault();
    }
  });
}

// Poll `url` for JSON every `every` ms: {"state": "waiting"} keeps asking; {"redirect": "/x"}
// goes there; {"state": "failed", "title", "message", "retry_url"} shows why in `status`.
function poll(url, status, every) {
  const finish = () => popupWindow?.close();
  const ask = async () => {
    let body = null;
    try {
      const response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      body = await response.json();
    } catch {
      setTimeout(ask, every * 2); // offline or restarting: keep trying, more gently
      return;
    }
    if (body.redirect) {
      finish();
      window.location.assign(body.redirect);
    } else if (body.state === "failed") {
      finish();
      showProblem(status, body);
    } else {
      setTimeout(ask, every);
    }
  };
  setTimeout(ask, every);
}

function showProblem(status, body) {
  if (!status) return;
  status.closest("section")?.classList.add("error");
  status.textContent = body.title ? `${body.title}: ${body.message}` : String(body.message);
  if (body.retry_url) {
    const again = document.createElement("a");
    again.href = body.retry_url;
    again.className = "button";
    again.textContent = "Try again";
    status.append(" ", again);
  }
}

// <section data-poll-url="URL" data-poll-seconds="N">: a page that waits on another site.
function enablePolling() {
  const box = document.querySelector("[data-poll-url]");
  if (!box) return;
  const every = Math.max(1, Number(box.dataset.pollSeconds || 2)) * 1000;
  poll(box.dataset.pollUrl, box.querySelector("[data-poll-status]"), every);
}

// <a href="START" data-popup-flow="START">: sign in with another site in a popup, staying on
// this page (see LoginProvider.popup). The popup opens at once, in the click, so browsers
// allow it; START (as JSON) then says where to send it and what to poll. With popups
// blocked, START?redirect=1 takes the whole page there and back.
function enablePopupFlows() {
  document.addEventListener("click", async (event) => {
    const link = event.target.closest("a[data-popup-flow]");
    if (!link) return;
    event.preventDefault();
    const start = new URL(link.dataset.popupFlow, window.location.href);
    const popup = window.open("about:blank", "medianest-signin", "popup,width=600,height=720");
    if (!popup) {
      start.searchParams.set("redirect", "1");
      window.location.assign(start);
      return;
    }
    popupWindow = popup;
    const status = document.querySelector("[data-poll-status]");
    let flow = null;
    try {
      const response = await fetch(start, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      flow = await response.json();
      if (!response.ok || !flow.popup_url) throw flow;
    } catch (problem) {
      popup.close();
      showProblem(status, problem?.message ? problem : { message: "Could not start signing in." });
      return;
    }
    popup.location.href = flow.popup_url;
    if (status) status.textContent = "Waiting for you to sign in in the other window…";
    poll(flow.poll_url, status, 2000);
  });
}

connectLive();
enablePopups();
enablePopupFlows();
enablePolling();
enableConfirmations();
enableWidgetDragging();
enableResultKeys();

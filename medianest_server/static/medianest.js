// MediaNest page enhancements: live updates over SSE, widget refresh, drag-and-drop order,
// confirmations and keyboard navigation of results. Every page works without this file.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function setUnread(count) {
  const badge = document.querySelector("[data-unread-badge]");
  if (!badge) return;
  badge.textContent = String(count);
  badge.hidden = count <= 0;
  badge.closest("a")?.setAttribute("aria-label", `Notifications, ${count} unread`);
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
  const types = new Set(["core.notification.created"]);
  for (const card of document.querySelectorAll("[data-refresh-on]")) {
    for (const type of card.dataset.refreshOn.split(" ").filter(Boolean)) types.add(type);
  }
  for (const type of types) {
    source.addEventListener(type, (message) => {
      if (type === "core.notification.created") {
        const badge = document.querySelector("[data-unread-badge]");
        setUnread(Number(badge?.textContent || 0) + 1);
      }
      for (const card of document.querySelectorAll("[data-refresh-on]")) {
        if (card.dataset.refreshOn.split(" ").includes(type)) refreshWidget(card);
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

connectLive();
enableConfirmations();
enableWidgetDragging();
enableResultKeys();

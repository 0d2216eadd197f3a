// The console: a router over the pages, the header, and the token prompt a server
// with tokens needs. Every page has a URL of its own that the server answers with
// this same document.

import { ApiError, setToken, token } from "./api";
import { h, link, message } from "./ui";
import { navigate, onNavigate } from "./nav";
import { overview } from "./pages/overview";
import { streams, entityPage } from "./pages/streams";
import { eventPage } from "./pages/event";
import { graphPage } from "./pages/graph";
import { proofPage } from "./pages/proof";
import { tailPage } from "./pages/tail";

type Page = (main: HTMLElement, params: string[], signal: AbortSignal) => Promise<void>;

const routes: [RegExp, Page, string][] = [
  [/^\/$/, overview, "Overview"],
  [/^\/streams$/, streams, "Streams"],
  [/^\/streams\/(.+)$/, entityPage, "Stream"],
  [/^\/events\/([^/]+)$/, eventPage, "Event"],
  [/^\/graph\/([^/]+)$/, graphPage, "Causal graph"],
  [/^\/proof$/, proofPage, "Proof"],
  [/^\/tail$/, tailPage, "Live tail"],
];

let current: AbortController | null = null;

function header(): HTMLElement {
  const search = h("input", {
    type: "search",
    name: "id",
    placeholder: "event id",
    "aria-label": "Open an event by id",
  }) as HTMLInputElement;
  return h(
    "header",
    {},
    h(
      "nav",
      { "aria-label": "Pages" },
      link("/", h("strong", {}, "batpak")),
      link("/streams", "Streams"),
      link("/proof", "Proof"),
      link("/tail", "Live tail"),
    ),
    h(
      "form",
      {
        class: "search",
        role: "search",
        onsubmit: (e: Event) => {
          e.preventDefault();
          const id = search.value.trim();
          if (id) navigate(`/events/${encodeURIComponent(id)}`);
        },
      },
      search,
      h("button", { type: "submit" }, "Open"),
    ),
    token()
      ? h(
          "button",
          {
            type: "button",
            class: "quiet",
            onclick: () => {
              setToken(null);
              void render();
            },
          },
          "Forget token",
        )
      : null,
  );
}

function tokenPrompt(main: HTMLElement, refused: boolean): void {
  const input = h("input", {
    type: "password",
    name: "token",
    autocomplete: "off",
    required: true,
    id: "token",
  }) as HTMLInputElement;
  main.replaceChildren(
    h(
      "section",
      { class: "card narrow" },
      h("h1", {}, "This server needs a token"),
      refused ? message("The token was refused.", "error") : null,
      h(
        "form",
        {
          onsubmit: (e: Event) => {
            e.preventDefault();
            setToken(input.value.trim());
            void render();
          },
        },
        h("label", { for: "token" }, "Bearer token"),
        input,
        h("button", { type: "submit" }, "Use it"),
      ),
      h("p", { class: "note" }, "It is kept for this tab only and sent as Authorization: Bearer."),
    ),
  );
  input.focus();
}

async function render(): Promise<void> {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const app = document.getElementById("app")!;
  const main = h("main", { id: "main", tabindex: "-1" });
  app.replaceChildren(header(), main);
  const path = decodeURIComponent(location.pathname).replace(/\/+$/, "") || "/";
  const route = routes.find(([re]) => re.test(path));
  if (!route) {
    main.append(h("h1", {}, "Not found"), message(`No page at ${path}.`, "error"));
    return;
  }
  const [re, page, title] = route;
  document.title = `${title} · batpak`;
  const params = (path.match(re) ?? []).slice(1);
  try {
    await page(main, params, controller.signal);
  } catch (e) {
    if (controller.signal.aborted) return;
    if (e instanceof ApiError && e.status === 401) {
      tokenPrompt(main, token() !== null);
      return;
    }
    const text = e instanceof ApiError ? `${e.message} (${e.code})` : String(e);
    main.append(message(text, "error"));
  }
}

document.addEventListener("click", (e) => {
  const a = (e.target as Element | null)?.closest("a[data-route]") as HTMLAnchorElement | null;
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  e.preventDefault();
  navigate(a.getAttribute("href")!);
});
window.addEventListener("popstate", () => void render());
onNavigate(() => void render());
void render();

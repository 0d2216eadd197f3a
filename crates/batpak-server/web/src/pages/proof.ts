// Proof: run verify with a progress bar and list its findings; take an anchor and
// download it; paste or upload an anchor or a receipt and see its verdict.

import { ApiError, get, post, postForText, postText, type Verdict } from "../api";
import { h, message, section, table } from "../ui";
import { verdictText } from "./event";

interface Job {
  job: string;
  state: "running" | "done" | "failed";
  bytes_done: number;
  bytes_total: number;
  report: { body: { findings: Finding[]; events: number; running_hash?: string } } | null;
  error: { code: string; message: string } | null;
}
interface Finding {
  check: string;
  file: string;
  offset: number;
  sequence: number | null;
  event: string | null;
  detail: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function proofPage(main: HTMLElement, _: string[], signal: AbortSignal): Promise<void> {
  const progress = h("progress", { id: "verify-progress", max: "1", value: "0", "aria-label": "verification progress" }) as HTMLProgressElement;
  const results = h("div", { id: "verify-results" });
  const run = h(
    "button",
    {
      type: "button",
      id: "verify-run",
      onclick: async () => {
        run.disabled = true;
        results.replaceChildren(message("Verifying…"));
        try {
          let job: Job;
          try {
            const started = await post<{ job: string; href: string }>("/v1/verify", undefined, signal);
            job = await get<Job>(started.href, signal);
          } catch (e) {
            if (e instanceof ApiError && e.code === "verify_running") {
              job = await get<Job>(`/v1/verify/${(e.details as { job: string }).job}`, signal);
            } else throw e;
          }
          while (job.state === "running") {
            progress.max = Math.max(1, job.bytes_total);
            progress.value = job.bytes_done;
            await sleep(200);
            job = await get<Job>(`/v1/verify/${job.job}`, signal);
          }
          progress.max = 1;
          progress.value = 1;
          if (job.state === "failed" || !job.report) {
            results.replaceChildren(message(`Verification could not run: ${job.error?.message}`, "error"));
          } else {
            const f = job.report.body.findings;
            results.replaceChildren(
              f.length
                ? h("p", { class: "error", role: "alert" }, `${f.length} finding${f.length === 1 ? "" : "s"}: the store does not hold as recorded.`)
                : h("p", { class: "ok" }, `Clean: ${job.report.body.events} events, every checksum, hash, link and index entry holds.`),
              f.length ? table(["check", "file", "offset", "sequence", "detail"], f.map((x) => [x.check, x.file, String(x.offset), x.sequence === null ? "" : String(x.sequence), x.detail])) : "",
            );
          }
        } catch (e) {
          results.replaceChildren(message(e instanceof ApiError ? e.message : String(e), "error"));
        } finally {
          run.disabled = false;
        }
      },
    },
    "Run verify",
  ) as HTMLButtonElement;

  const anchorOut = h("div", { id: "anchor-out" });
  const take = h(
    "button",
    {
      type: "button",
      id: "anchor-take",
      onclick: async () => {
        try {
          // Kept as the server's text: its numbers do not all fit a JavaScript number.
          const text = await postForText("/v1/anchors", signal);
          const anchor = JSON.parse(text) as { sequence: number };
          const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
          anchorOut.replaceChildren(
            h("pre", {}, text),
            h("a", { href: url, download: `anchor-${anchor.sequence}.json`, id: "anchor-download" }, "Download the anchor"),
          );
        } catch (e) {
          anchorOut.replaceChildren(message(e instanceof ApiError ? e.message : String(e), "error"));
        }
      },
    },
    "Take an anchor",
  );

  const pasted = h("textarea", { id: "check-input", rows: "8", "aria-label": "an anchor or a receipt, as JSON" }) as HTMLTextAreaElement;
  const file = h("input", { type: "file", accept: ".json,application/json", "aria-label": "upload an anchor or a receipt" }) as HTMLInputElement;
  file.addEventListener("change", async () => {
    const f = file.files?.[0];
    if (f) pasted.value = await f.text();
  });
  const verdict = h("div", { id: "check-verdict" });
  const check = h(
    "button",
    {
      type: "button",
      id: "check-run",
      onclick: async () => {
        let doc: Record<string, unknown>;
        try {
          doc = JSON.parse(pasted.value);
        } catch {
          verdict.replaceChildren(message("That is not JSON.", "error"));
          return;
        }
        const isAnchor = "running_hash" in doc;
        try {
          const v = await postText<Verdict>(isAnchor ? "/v1/anchors/verify" : "/v1/receipts/verify", pasted.value, signal);
          verdict.replaceChildren(h("p", { class: v.holds ? "ok" : "error" }, `${isAnchor ? "Anchor" : "Receipt"} ${verdictText(v)}`));
        } catch (e) {
          verdict.replaceChildren(message(e instanceof ApiError ? e.message : String(e), "error"));
        }
      },
    },
    "Check it",
  );

  main.append(
    h("h1", {}, "Proof"),
    section("Verify the whole store", h("p", {}, run, " ", progress), results),
    section("Anchor", h("p", {}, take), anchorOut),
    section("Check an anchor or a receipt", pasted, h("p", {}, file, " ", check), verdict),
  );
}

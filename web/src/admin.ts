// /admin: the staff console. Pending rewards with filters; build, sign, submit and retry
// payout batches and watch them change live; the treasury, its reconciliation and anomalies;
// freeze and unfreeze; plan versions; the audit log. Role-aware: an auditor reads, an
// operator runs payouts, an admin also freezes and acknowledges anomalies.
import {
  $,
  api,
  bnb,
  button,
  fillTable,
  guarded,
  input,
  live,
  ok,
  parseBnb,
  type Schemas,
  setText,
  short,
  showError,
  showInfo,
  type SignedIn,
  signIn,
  wallet,
  when,
} from "./client";

const TERMINAL = new Set(["executed", "expired", "failed"]);
const STAFF = ["auditor", "operator", "admin"];

let me: SignedIn | null = null;
let socketOpen = false;

const isOperator = () => !!me && (me.roles.includes("operator") || me.roles.includes("admin"));
const isAdmin = () => !!me && me.roles.includes("admin");

function badge(text: string): HTMLElement {
  const span = document.createElement("span");
  span.className = `badge ${text}`;
  span.textContent = text;
  return span;
}

/** Show only what the signed-in roles may do: `data-needs="operator"` or `"admin"`. */
function applyRoles(): void {
  for (const element of document.querySelectorAll<HTMLElement>("[data-needs]")) {
    const needs = element.dataset.needs;
    element.hidden = needs === "admin" ? !isAdmin() : !isOperator();
  }
  $("read-only").hidden = isOperator();
}

// ---------------------------------------------------------------------------- rewards
async function loadRewards(): Promise<void> {
  const status = (input("reward-status").value || "pending") as
    | "pending"
    | "held"
    | "reserved"
    | "batched"
    | "claimable"
    | "paid"
    | "reinvested";
  const type = input("reward-type").value.trim() || undefined;
  const userText = input("reward-user").value.trim();
  const minText = input("reward-min").value.trim();
  const minAmount = minText ? parseBnb(minText) : null;
  if (minText && minAmount === null) throw new Error("Minimum amount: a BNB figure such as 0.5");
  const page = ok(
    await api.GET("/rewards/pending", {
      params: {
        query: {
          status,
          type,
          user: userText ? Number(userText) : undefined,
          // Wei is a decimal string both ways (a JS number cannot hold it past 2^53).
          minAmount: minAmount === null ? undefined : minAmount.toString(),
          limit: 100,
        },
      },
    }),
  );
  const total = page.items.reduce((sum, r) => sum + BigInt(r.amount), 0n);
  setText("rewards-total", `${page.items.length} lines, ${bnb(total)}${page.nextCursor ? " (first page)" : ""}`);
  fillTable(
    "rewards",
    page.items.map((r) => [r.id, r.userId, r.type, r.level ?? "", bnb(r.amount), r.status, r.batchId ?? "", when(r.createdAt)]),
    "No reward lines match.",
  );
}

// ---------------------------------------------------------------------------- batches
async function act(batchId: number, step: "sign" | "submit" | "retry"): Promise<void> {
  const params = { params: { path: { batch_id: batchId } } };
  if (step === "sign") ok(await api.POST("/payouts/{batch_id}/sign", params));
  else if (step === "submit") ok(await api.POST("/payouts/{batch_id}/submit", params));
  else ok(await api.POST("/payouts/{batch_id}/retry", params));
  showInfo(`Batch ${batchId}: ${step} requested; the settlement worker does it.`);
  await Promise.all([loadBatches(), loadAudit()]);
}

function actions(batch: Schemas["BatchOut"]): Node {
  const cell = document.createElement("span");
  if (!isOperator()) return cell;
  if (batch.status === "built") cell.append(button("Sign", () => act(batch.id, "sign")));
  if (batch.status === "signed") cell.append(button("Submit", () => act(batch.id, "submit")));
  if (batch.status === "submitted") cell.append(button("Retry", () => act(batch.id, "retry")));
  return cell;
}

let batchesInFlight = false;

async function loadBatches(): Promise<void> {
  const page = ok(await api.GET("/payouts", { params: { query: { limit: 50 } } }));
  batchesInFlight = page.items.some((b) => !TERMINAL.has(b.status));
  fillTable(
    "batches",
    page.items.map((b) => [
      b.id,
      badge(b.status),
      b.recipientCount,
      bnb(b.total),
      short(b.txHash),
      b.attempts,
      when(b.createdAt),
      actions(b),
    ]),
    "No batches yet.",
  );
}

async function buildBatch(): Promise<void> {
  const max = input("max-recipients").value.trim();
  const batch = ok(
    await api.POST("/payouts/build-batch", { body: { maxRecipients: max ? Number(max) : null } }),
  );
  showInfo(`Batch ${batch.id} built: ${batch.recipientCount} recipients, ${bnb(batch.total)}.`);
  await Promise.all([loadBatches(), loadRewards(), loadAudit()]);
}

// ---------------------------------------------------------------------------- treasury
async function loadTreasury(): Promise<void> {
  const s = ok(await api.GET("/treasury/summary"));
  setText("treasury-balanced", s.balanced ? "balanced" : "NOT balanced");
  $("treasury-balanced").className = `badge ${s.balanced ? "ok" : "bad"}`;
  fillTable("treasury", [
    ["block", s.block],
    ["contract balance", bnb(s.contract_balance)],
    ["confirmed inflows", bnb(s.inflows)],
    ["confirmed outflows", bnb(s.outflows)],
    ...Object.entries(s.liabilities).map(([bucket, wei]) => [`liabilities: ${bucket}`, bnb(wei)]),
    ["surplus (BNB no event accounts for)", bnb(s.surplus ?? "0")],
    ["surplus not yet credited to the company", bnb(s.surplus_uncredited ?? "0")],
    ["contract − surplus − (inflows + surplus drawn − outflows)", `${s.chain_difference} wei`],
    ["contract − uncredited surplus − liabilities", `${s.ledger_difference} wei`],
  ]);
  const rec = ok(await api.GET("/monitoring/reconciliation", { params: { query: { limit: 5 } } }));
  const latest = rec.latest;
  setText(
    "reconciliation",
    latest
      ? `Last reconciliation at block ${latest.block} (${when(latest.createdAt)}): ${latest.ok ? "ok" : "MISMATCH"}, difference ${latest.difference} wei, surplus ${bnb(latest.surplus)} (credited ${bnb(latest.surplusCredited)}), deficit ${bnb(latest.deficit)}.`
      : "No reconciliation has run yet (the worker runs it on its schedule).",
  );
  fillTable(
    "mismatches",
    (latest?.recipientMismatches ?? []).map((m) => [JSON.stringify(m)]),
    "No per-recipient mismatch in the last reconciliation.",
  );
  await loadAnomalies();
}

async function loadAnomalies(): Promise<void> {
  const open = ok(await api.GET("/monitoring/anomalies"));
  setText(
    "payouts-blocked",
    open.submissionsBlocked
      ? `Payouts are blocked: ${open.submissionsBlocked}.`
      : "Payouts are not blocked.",
  );
  fillTable(
    "anomalies",
    open.items.map((a) => [
      a.id,
      a.kind,
      a.block ?? "—",
      a.txHash ? short(a.txHash) : "—",
      bnb(a.inflow),
      bnb(a.outflow),
      a.detail,
      isAdmin()
        ? button("Acknowledge…", () => {
            input("anomaly-id").value = String(a.id);
            input("anomaly-note").focus();
          })
        : "",
    ]),
    "No open anomaly.",
  );
}

async function acknowledge(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const id = Number(input("anomaly-id").value);
  const note = input("anomaly-note").value.trim();
  const anomaly = ok(
    await api.POST("/monitoring/anomalies/{anomaly_id}/ack", {
      params: { path: { anomaly_id: id } },
      body: { note },
    }),
  );
  showInfo(`Anomaly ${anomaly.id} (${anomaly.kind}) acknowledged.`);
  await Promise.all([loadAudit(), loadAnomalies()]);
}

// ---------------------------------------------------------------------------- participants
async function setFrozen(frozen: boolean): Promise<void> {
  const userId = Number(input("freeze-user").value);
  if (!userId) throw new Error("Enter a participant id.");
  const reason = input("freeze-reason").value.trim() || null;
  const params = { params: { path: { user_id: userId } }, body: { reason } };
  const out = frozen
    ? ok(await api.POST("/admin/users/{user_id}/freeze", params))
    : ok(await api.POST("/admin/users/{user_id}/unfreeze", params));
  showInfo(`Participant ${out.userId} ${out.frozen ? "frozen" : "unfrozen"} from block ${out.effectiveBlock}.`);
  await loadAudit();
}

// ---------------------------------------------------------------------------- plan, audit
async function loadPlan(): Promise<void> {
  const plan = ok(await api.GET("/plan"));
  setText(
    "plan-current",
    `Version ${plan.current.version} in force, hash ${plan.current.planHash}; company wallet ${plan.companyWallet ?? "—"}.`,
  );
  fillTable(
    "plans",
    plan.versions.map((v) => [v.version, v.planHash, when(v.effectiveFrom), v.effectiveBlock ?? "—"]),
  );
}

async function loadAudit(): Promise<void> {
  const actor = input("audit-actor").value.trim() || undefined;
  const action = input("audit-action").value.trim() || undefined;
  const page = ok(await api.GET("/admin/audit", { params: { query: { actor, action, limit: 50 } } }));
  fillTable(
    "audit",
    page.items.map((a) => [when(a.at), short(a.actor), a.action, a.target ?? "", JSON.stringify(a.details)]),
    "No audit rows match.",
  );
}

// ---------------------------------------------------------------------------- start
async function refreshAll(): Promise<void> {
  await Promise.all([loadRewards(), loadBatches(), loadTreasury(), loadPlan(), loadAudit()]);
}

async function start(): Promise<void> {
  me = await signIn(wallet());
  setText("wallet", me.wallet);
  setText("roles", me.roles.join(", "));
  $("signed-out").hidden = true;
  if (!me.roles.some((r) => STAFF.includes(r))) {
    $("no-role").hidden = false;
    return;
  }
  $("signed-in").hidden = false;
  applyRoles();
  await refreshAll();
  live(
    (event) => {
      if (event.type === "batch.executed") {
        showInfo(`Batch ${String(event.data.batchId)} executed on chain.`);
        void Promise.all([loadBatches(), loadRewards(), loadTreasury()]).catch(showError);
      } else if (event.type === "pool.placement") {
        void loadRewards().catch(showError);
      }
    },
    (open) => {
      socketOpen = open;
      setText("live", open ? "live" : "polling");
    },
  );
  // Fallback polling: batches move without an event between built and executed (signed,
  // submitted), and the socket may be down.
  setInterval(() => {
    if (batchesInFlight || !socketOpen) void loadBatches().catch(showError);
  }, 2000);
}

const click = (id: string, action: () => Promise<void>) =>
  $(id).addEventListener("click", (e) => void guarded(e.currentTarget as HTMLButtonElement, action));

click("connect", start);
click("build", buildBatch);
click("freeze", () => setFrozen(true));
click("unfreeze", () => setFrozen(false));
$("reward-filters").addEventListener("submit", (e) => {
  e.preventDefault();
  void guarded(null, loadRewards);
});
$("audit-filters").addEventListener("submit", (e) => {
  e.preventDefault();
  void guarded(null, loadAudit);
});
$("anomaly-form").addEventListener("submit", (e) => void guarded(null, () => acknowledge(e)));
click("refresh-treasury", loadTreasury);

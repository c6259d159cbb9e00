// /app: the reference dapp page for participants. Sign in, register under a sponsor (the
// wallet sends the transaction the API returns), watch the placement go from pending to
// confirmed, and read the pool position, rewards by status and history, updated live.
import {
  $,
  api,
  ApiError,
  bnb,
  fillTable,
  guarded,
  input,
  live,
  ok,
  type Schemas,
  sendTx,
  setText,
  short,
  showError,
  showInfo,
  type SignedIn,
  signIn,
  sleep,
  wallet,
  when,
} from "./client";

// Reward statuses in the order a reward moves through them.
const STATUSES = ["pending", "held", "reserved", "batched", "claimable", "paid", "reinvested"];

let me: SignedIn | null = null;
let sentTx: string | null = null;

/** POST /users/register, waiting out the answers that mean "not yet": 503 slot-unavailable
 * and 429 (after Retry-After), and 422 referrer-not-active (a sponsor whose own registration
 * is not final yet). */
async function requestRegistration(referrer: string): Promise<Schemas["RegistrationOut"]> {
  for (let attempt = 0; ; attempt++) {
    try {
      return ok(await api.POST("/users/register", { body: { referrer } }));
    } catch (error) {
      if (!(error instanceof ApiError) || attempt >= 120) throw error;
      const status = error.response.status;
      if (status === 503 || status === 429) {
        const seconds = Number(error.response.headers.get("Retry-After") ?? "1");
        showInfo(`Waiting for a free slot (retrying in ${seconds} s)…`);
        await sleep(Math.min(seconds, 5) * 1000);
      } else if (status === 422 && error.kind === "referrer-not-active") {
        showInfo("The sponsor's own registration is not final yet; waiting…");
        await sleep(1000);
      } else {
        throw error;
      }
    }
  }
}

async function register(): Promise<void> {
  if (!me) return;
  const sponsor = input("sponsor").value.trim();
  if (!sponsor) throw new Error("Enter your sponsor's wallet address.");
  const registration = await requestRegistration(sponsor);
  setPlacement("awaiting", `slot ${registration.payload.slot} reserved; confirm in your wallet`);
  showInfo(`Entry: ${bnb(registration.tx.value)}. Confirm the transaction in your wallet.`);
  sentTx = await sendTx(wallet(), me.wallet, registration.tx);
  showInfo(`Transaction sent: ${sentTx}`);
  await refresh();
}

function setPlacement(state: "none" | "awaiting" | "pending" | "confirmed", detail: string) {
  const badge = $("placement-state");
  badge.textContent = state === "none" ? "not registered" : state;
  badge.className = `badge ${state}`;
  setText("placement-detail", detail);
}

async function refresh(): Promise<void> {
  if (!me) return;
  const profile = ok(await api.GET("/users/me"));
  setText("status", profile.frozen ? `${profile.status} (frozen)` : profile.status);
  setText("referrer", profile.referrer ?? "—");
  setText("referrals", `${profile.referrals.direct} direct, ${profile.referrals.active} active`);

  const level1 = profile.positions.find((p) => p.level === 1);
  if (profile.status === "active" && level1) {
    setPlacement("confirmed", `level 1, slot ${level1.slot}`);
    $("register-form").hidden = true;
  } else if (sentTx || (profile.pendingEvents ?? []).some((e) => e.name === "RegistrationAccepted")) {
    let detail = "waiting for the chain";
    if (sentTx) {
      const chain = ok(await api.POST("/users/register/confirm", { body: { txHash: sentTx } }));
      detail =
        chain.state === "reverted"
          ? "the transaction reverted"
          : `transaction ${short(sentTx)}: ${chain.state}` +
            (chain.block ? `, block ${chain.block}, ${chain.confirmations} confirmations` : "");
    }
    setPlacement("pending", `slot ${profile.pendingRegistration?.slot ?? "?"}; ${detail}`);
    $("register-form").hidden = true;
  } else if (profile.pendingRegistration) {
    const p = profile.pendingRegistration;
    setPlacement("awaiting", `slot ${p.slot} reserved until ${new Date(p.deadline * 1000).toISOString()}`);
  } else {
    setPlacement("none", "register under a sponsor to take a slot");
  }

  fillTable(
    "positions",
    profile.positions.map((p) => [
      p.level,
      p.slot,
      `${p.filled} / 14`,
      p.completed ? "yes" : "no",
      bnb(p.reserved),
    ]),
    "No position yet.",
  );
  const byStatus = profile.balances.byStatus;
  const statuses = [...STATUSES.filter((s) => s in byStatus), ...Object.keys(byStatus).filter((s) => !STATUSES.includes(s))];
  fillTable(
    "balances",
    statuses.map((status) => [status, bnb(byStatus[status])]),
    "No rewards yet.",
  );
  const history = ok(
    await api.GET("/users/{user_id}/history", {
      params: { path: { user_id: profile.id }, query: { kind: "reward", limit: 20 } },
    }),
  );
  fillTable(
    "history",
    [
      ...(history.pending ?? []).map((e) => [
        "(not final)",
        e.name,
        "",
        bnb(e.amount ?? null),
        `block ${e.blockNumber}`,
      ]),
      ...history.items.map((item) => [
        when(item.at),
        item.type ?? item.kind,
        item.level ?? "",
        bnb(item.amount),
        item.status ?? "",
      ]),
    ],
    "No rewards yet.",
  );
}

async function start(): Promise<void> {
  me = await signIn(wallet());
  setText("wallet", me.wallet);
  $("signed-out").hidden = true;
  $("signed-in").hidden = false;
  const params = new URLSearchParams(window.location.search);
  const plan = ok(await api.GET("/plan"));
  input("sponsor").value = params.get("ref") ?? plan.companyWallet ?? "";
  await refresh();
  live(
    // An event only says "read again": the ledger, through the API, says what happened.
    () => void refresh().catch(showError),
    (open) => setText("live", open ? "live" : "reconnecting…"),
  );
  // Polling beside the socket: the socket only nudges, and may be down.
  setInterval(() => void refresh().catch(showError), 2000);
}

$("connect").addEventListener("click", (e) => void guarded(e.currentTarget as HTMLButtonElement, start));
$("register").addEventListener("click", (e) => void guarded(e.currentTarget as HTMLButtonElement, register));

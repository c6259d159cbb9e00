// What both pages share: the typed API client (openapi-fetch + the types generated from
// docs/openapi.json), the injected wallet (EIP-1193), Sign-In with Ethereum, exact BNB
// amounts, the live-event socket and a few DOM helpers.
import createClient from "openapi-fetch";
import type { components, paths } from "./api";

export type Schemas = components["schemas"];
export type Problem = Schemas["Problem"];
export type Tokens = Schemas["TokensOut"];

export const api = createClient<paths>({ baseUrl: window.location.origin });

let accessToken = "";
api.use({
  onRequest({ request }) {
    if (accessToken) request.headers.set("Authorization", `Bearer ${accessToken}`);
    return request;
  },
});

/** An API refusal: the problem document (switch on `type`), and the HTTP answer. */
export class ApiError extends Error {
  constructor(
    readonly problem: Problem | undefined,
    readonly response: Response,
  ) {
    super(problem ? `${problem.title}: ${problem.detail}` : `HTTP ${response.status}`);
  }

  /** The stable part of the problem `type` (`.../problems/referrer-not-active`). */
  get kind(): string {
    return (this.problem?.type ?? "").split("/").pop() ?? "";
  }
}

/** `data` of an openapi-fetch answer, or an ApiError. */
export function ok<T>(answer: { data?: T; error?: unknown; response: Response }): T {
  if (answer.data !== undefined) return answer.data;
  if (answer.response.ok) return undefined as T; // 204
  throw new ApiError(answer.error as Problem | undefined, answer.response);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------- amounts (wei)
const WEI_PER_BNB = 10n ** 18n;

/** Wei (a decimal string, as the API sends it) as BNB, exactly: BigInt, never a float. */
export function bnb(wei: string | bigint | null | undefined): string {
  if (wei === null || wei === undefined || wei === "") return "—";
  const value = BigInt(wei);
  const sign = value < 0n ? "-" : "";
  const abs = value < 0n ? -value : value;
  const whole = abs / WEI_PER_BNB;
  const fraction = (abs % WEI_PER_BNB).toString().padStart(18, "0").replace(/0+$/, "");
  return `${sign}${whole.toLocaleString("en-US")}${fraction ? "." + fraction : ""} BNB`;
}

/** A BNB amount typed by a person ("1.5") as wei, exactly; null when it is not a number. */
export function parseBnb(text: string): bigint | null {
  const match = /^\s*(\d+)(?:\.(\d{0,18}))?\s*$/.exec(text);
  if (!match) return null;
  return BigInt(match[1]) * WEI_PER_BNB + BigInt((match[2] ?? "").padEnd(18, "0") || "0");
}

export const short = (hex: string | null | undefined) =>
  hex ? `${hex.slice(0, 6)}…${hex.slice(-4)}` : "—";

// ---------------------------------------------------------------------------- the wallet
export interface Eip1193 {
  request(args: { method: string; params?: unknown[] }): Promise<unknown>;
}

declare global {
  interface Window {
    ethereum?: Eip1193;
  }
}

export function wallet(): Eip1193 {
  if (!window.ethereum) throw new Error("No wallet found: install or unlock a browser wallet.");
  return window.ethereum;
}

function utf8Hex(text: string): string {
  return "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
}

export interface SignedIn {
  wallet: string;
  userId: number;
  roles: string[];
  accessToken: string;
}

/**
 * Sign-In with Ethereum: the wallet signs the exact message GET /auth/nonce returns
 * (personal_sign), POST /auth/wallet exchanges it for tokens. The access token is refreshed
 * before it expires, always with the newest refresh token.
 */
export async function signIn(eth: Eip1193): Promise<SignedIn> {
  const accounts = (await eth.request({ method: "eth_requestAccounts" })) as string[];
  if (!accounts.length) throw new Error("The wallet shared no account.");
  const address = accounts[0];
  const nonce = ok(await api.GET("/auth/nonce", { params: { query: { wallet: address } } }));
  const signature = (await eth.request({
    method: "personal_sign",
    params: [utf8Hex(nonce.message), address],
  })) as string;
  const tokens = ok(
    await api.POST("/auth/wallet", { body: { wallet: address, signature, nonce: nonce.nonce } }),
  );
  keepFresh(tokens);
  return {
    wallet: tokens.user.wallet,
    userId: tokens.user.id,
    roles: tokens.user.roles,
    accessToken: tokens.accessToken,
  };
}

function keepFresh(tokens: Tokens): void {
  accessToken = tokens.accessToken;
  const refreshIn = Math.max(10, tokens.expiresIn * 0.8) * 1000;
  setTimeout(async () => {
    const answer = await api.POST("/auth/refresh", {
      body: { refreshToken: tokens.refreshToken },
    });
    if (answer.data) keepFresh(answer.data);
  }, refreshIn);
}

export function currentToken(): string {
  return accessToken;
}

/** Send the `{to, data, value, chainId}` the API returned from the signed-in wallet. */
export async function sendTx(eth: Eip1193, from: string, tx: Schemas["WalletTx"]): Promise<string> {
  const chainId = BigInt((await eth.request({ method: "eth_chainId" })) as string);
  if (chainId !== BigInt(tx.chainId)) {
    throw new Error(`Switch the wallet to chain ${tx.chainId} (it is on chain ${chainId}).`);
  }
  return (await eth.request({
    method: "eth_sendTransaction",
    params: [
      {
        from,
        to: tx.to,
        data: tx.data,
        value: "0x" + BigInt(tx.value).toString(16),
        chainId: "0x" + tx.chainId.toString(16),
      },
    ],
  })) as string;
}

// ---------------------------------------------------------------------------- live events
export interface LiveEvent {
  type: string;
  data: Record<string, unknown>;
}

/**
 * The live-event socket (`/ws?token=`), reconnecting after a drop. Events are nudges, not
 * the record: on every (re)connection and event the page reads the state again.
 */
export function live(onEvent: (event: LiveEvent) => void, onState: (open: boolean) => void): void {
  const connect = () => {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(
      `${scheme}://${window.location.host}/ws?token=${encodeURIComponent(accessToken)}`,
    );
    socket.onopen = () => onState(true);
    socket.onmessage = (message) => onEvent(JSON.parse(String(message.data)) as LiveEvent);
    socket.onclose = () => {
      onState(false);
      setTimeout(connect, 3000);
    };
  };
  connect();
}

// ---------------------------------------------------------------------------- DOM
export function $(id: string): HTMLElement {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element;
}

export function input(id: string): HTMLInputElement {
  return $(id) as HTMLInputElement;
}

export function setText(id: string, text: string): void {
  $(id).textContent = text;
}

type Cell = string | number | Node;

/** Replace the body of table `id` with `rows` (text cells, or nodes such as buttons). */
export function fillTable(id: string, rows: Cell[][], empty = "Nothing yet."): void {
  const body = $(id).querySelector("tbody") ?? $(id);
  body.replaceChildren();
  if (!rows.length) {
    const tr = body.appendChild(document.createElement("tr"));
    const td = tr.appendChild(document.createElement("td"));
    td.colSpan = 20;
    td.className = "muted";
    td.textContent = empty;
    return;
  }
  for (const row of rows) {
    const tr = body.appendChild(document.createElement("tr"));
    for (const cell of row) {
      const td = tr.appendChild(document.createElement("td"));
      if (cell instanceof Node) td.appendChild(cell);
      else td.textContent = String(cell);
    }
  }
}

export function button(label: string, onClick: () => Promise<void> | void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", () => void guarded(b, onClick));
  return b;
}

/** Run an action with its button disabled; its error goes to the page's message line. */
export async function guarded(b: HTMLButtonElement | null, action: () => Promise<void> | void) {
  if (b) b.disabled = true;
  try {
    await action();
  } catch (error) {
    showError(error);
  } finally {
    if (b) b.disabled = false;
  }
}

export function showError(error: unknown): void {
  const line = document.getElementById("message");
  const text = error instanceof Error ? error.message : String(error);
  if (line) {
    line.textContent = text;
    line.className = "message error";
  }
  console.error(error);
}

export function showInfo(text: string): void {
  const line = document.getElementById("message");
  if (line) {
    line.textContent = text;
    line.className = "message";
  }
}

export function when(iso: string): string {
  return new Date(iso).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

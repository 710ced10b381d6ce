// Benchmark peer: the same tiny "store" served three ways: over an ipc/ binding, over
// worker.postMessage and over a MessageChannel port. Handlers are trivial so the transport
// dominates what is measured.
import { serveStore } from "../../ipc/mod.ts";
import type { StoreService } from "../../ipc/store-client.ts";

declare const self: Worker;

const calls: Record<string, (req: any) => unknown> = {
  "account.get": (req: { address: string }) => ({
    userId: 1,
    address: req.address,
    displayName: "Bench User",
    quotaBytes: null,
    quotaMessages: null,
    usedBytes: 0,
    usedMessages: 0,
  }),
  "body.append": (req: { uploadId: number; chunk: Uint8Array }) => ({ size: req.chunk.byteLength }),
};

const service = {
  calls,
  streams: {},
  peerGone() {},
  setPublisher() {},
} as unknown as StoreService;

interface Request {
  id: number;
  m: string;
  a: unknown;
}

function answer(msg: Request, reply: (r: unknown) => void) {
  reply({ id: msg.id, r: calls[msg.m]!(msg.a) });
}

self.onmessage = (e: MessageEvent) => {
  const msg = e.data;
  if (msg.type === "serve") {
    serveStore(msg.descriptor, service);
    self.postMessage({ type: "ready" });
  } else if (msg.type === "port") {
    const port = msg.port as MessagePort;
    port.onmessage = (ev) => answer(ev.data, (r) => port.postMessage(r));
    self.postMessage({ type: "ready" });
  } else answer(msg, (r) => self.postMessage(r));
};

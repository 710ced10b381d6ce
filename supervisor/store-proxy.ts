// The store client an engine holds for its whole life. The binding underneath is replaced when
// the store worker restarts: calls made while there is none fail at once as "unavailable"
// (engines answer with their temporary-failure reply), and subscriptions are re-made on the
// new binding so IMAP IDLE sessions keep hearing about new mail.
import { StoreError, type StoreTopics } from "../ipc/store-api.ts";
import type { StoreClient } from "../ipc/store-client.ts";

type Closable = StoreClient & { close(): void };

interface Subscription {
  topic: keyof StoreTopics;
  listener: (event: never) => void;
  unsubscribe: (() => void) | null;
}

export class StoreProxy implements StoreClient {
  #client: Closable | null = null;
  #subs = new Set<Subscription>();

  get attached(): boolean {
    return this.#client !== null;
  }

  attach(client: Closable): void {
    this.detach();
    this.#client = client;
    for (const s of this.#subs) {
      s.unsubscribe = client.subscribe(s.topic, s.listener as (e: unknown) => void);
    }
  }

  detach(): void {
    const old = this.#client;
    this.#client = null;
    for (const s of this.#subs) {
      s.unsubscribe?.();
      s.unsubscribe = null;
    }
    old?.close();
  }

  #current(): Closable {
    if (!this.#client) throw new StoreError("unavailable", "the store is restarting");
    return this.#client;
  }

  call: StoreClient["call"] = (method, req) => {
    try {
      return this.#current().call(method, req);
    } catch (err) {
      return Promise.reject(err);
    }
  };

  stream: StoreClient["stream"] = (method, req) => this.#current().stream(method, req);

  subscribe: StoreClient["subscribe"] = (topic, listener) => {
    const sub: Subscription = {
      topic,
      listener: listener as (e: never) => void,
      unsubscribe: null,
    };
    this.#subs.add(sub);
    if (this.#client) sub.unsubscribe = this.#client.subscribe(topic, listener);
    return () => {
      sub.unsubscribe?.();
      this.#subs.delete(sub);
    };
  };
}

// The central queue manager (the supervisor's binding facility): owns the shared heap, creates
// bindings between any two workers, remembers who talks to whom, and cleans up when a worker
// dies: its bindings are torn down (the survivor's pending calls reject at once), every heap
// block it owned is freed, and a heap lock it died holding is recovered.
import {
  type BindingDescriptor,
  bindingState,
  type BindingView,
  createBindingBuffer,
  killBinding,
  OPEN,
  viewBinding,
} from "./binding.ts";
import { createDoorbell, forceDoorbell } from "./doorbell.ts";
import {
  CLIENT_SIDE,
  MANAGER_TAG,
  ownerBinding,
  ownerSide,
  SERVER_SIDE,
  SharedHeap,
  UNIT_BYTES,
} from "./heap.ts";
import { ringSlotsFor } from "./ring.ts";

/** The metabase's `ipc` section. */
export interface QueueManagerOptions {
  heapBytes: number;
  ringSlots: number;
  chunkBytes: number;
  /** Stream chunks in flight per stream (credit window); default 8. */
  streamWindowChunks?: number;
  /** A call not answered in this time rejects with "unavailable"; default 120 s. */
  callTimeoutMs?: number;
}

export interface QueueManagerStats {
  heapBytes: number;
  heapUsedBytes: number;
  heapBlocks: number;
  /** Bindings whose both ends are alive and open. */
  bindings: number;
  workers: number;
  /** Workers that died and were cleaned up since start. */
  workersGone: number;
  /** Heap blocks freed on behalf of dead workers since start. */
  blocksReclaimed: number;
}

interface WorkerEntry {
  id: string;
  tag: number;
  bell: SharedArrayBuffer;
  bellView: Int32Array;
}

interface BindingEntry {
  id: number;
  server: WorkerEntry;
  client: WorkerEntry;
  view: BindingView;
  serverGone: boolean;
  clientGone: boolean;
}

export class QueueManager {
  /** Distinguishes managers in one process (tests), so doorbell keys never collide. */
  readonly id = `qm${Math.floor(Math.random() * 2 ** 32).toString(36)}`;
  readonly #heapBuffer: SharedArrayBuffer;
  readonly #heap: SharedHeap;
  readonly #ringSlots: number;
  readonly #chunkBytes: number;
  readonly #window: number;
  readonly #callTimeoutMs: number;
  readonly #workers = new Map<string, WorkerEntry>();
  readonly #bindings = new Map<number, BindingEntry>();
  #nextTag = MANAGER_TAG + 1;
  #nextBinding = 1;
  #workersGone = 0;
  #blocksReclaimed = 0;

  constructor(options: QueueManagerOptions) {
    if (!(options.chunkBytes >= 1)) throw new RangeError("ipc.chunkBytes must be positive");
    this.#heapBuffer = SharedHeap.create(options.heapBytes);
    this.#heap = new SharedHeap(this.#heapBuffer, MANAGER_TAG);
    if (options.chunkBytes > this.#heap.maxBlockBytes) {
      throw new RangeError("ipc.chunkBytes must fit in one heap block");
    }
    this.#ringSlots = ringSlotsFor(options.ringSlots);
    this.#chunkBytes = options.chunkBytes;
    this.#window = Math.max(1, options.streamWindowChunks ?? 8);
    this.#callTimeoutMs = Math.max(1, options.callTimeoutMs ?? 120_000);
  }

  /** This thread's view of the heap (tests, diagnostics). */
  get heap(): SharedHeap {
    return this.#heap;
  }

  /**
   * Connects a client worker to a server worker. Post `server` to the server worker (for
   * `serveStore`) and `client` to the client worker (for `attachStoreClient`).
   */
  bind(serverWorkerId: string, clientWorkerId: string): {
    server: BindingDescriptor;
    client: BindingDescriptor;
    bindingId: number;
  } {
    if (serverWorkerId === clientWorkerId) throw new Error("a worker cannot bind to itself");
    const server = this.#worker(serverWorkerId);
    const client = this.#worker(clientWorkerId);
    const id = this.#nextBinding++;
    if (id >= 2 ** 30) throw new Error("binding ids exhausted");
    const buffer = createBindingBuffer(this.#ringSlots);
    this.#bindings.set(id, {
      id,
      server,
      client,
      view: viewBinding(buffer, this.#ringSlots),
      serverGone: false,
      clientGone: false,
    });
    const common = {
      kind: "posthorn.ipc.binding" as const,
      bindingId: id,
      peer: `${clientWorkerId}#${id}`,
      managerId: this.id,
      heap: this.#heapBuffer,
      binding: buffer,
      ringSlots: this.#ringSlots,
      chunkBytes: this.#chunkBytes,
      streamWindow: this.#window,
      callTimeoutMs: this.#callTimeoutMs,
    };
    return {
      bindingId: id,
      server: {
        ...common,
        side: "server",
        selfWorker: serverWorkerId,
        peerWorker: clientWorkerId,
        selfTag: server.tag,
        selfBell: server.bell,
        peerBell: client.bell,
      },
      client: {
        ...common,
        side: "client",
        selfWorker: clientWorkerId,
        peerWorker: serverWorkerId,
        selfTag: client.tag,
        selfBell: client.bell,
        peerBell: server.bell,
      },
    };
  }

  /**
   * A worker exited, crashed or was terminated: tear down its bindings (waking the survivors,
   * whose pending calls reject with "unavailable"), free every block it owned. Call it before
   * binding the restarted worker again (same id: it gets a fresh incarnation).
   */
  workerGone(workerId: string): void {
    const w = this.#workers.get(workerId);
    if (!w) return;
    this.#workers.delete(workerId);
    this.#workersGone++;
    this.#heap.recoverFrom(w.tag);
    for (const b of this.#bindings.values()) {
      if (b.server !== w && b.client !== w) continue;
      killBinding(b.view);
      if (b.server === w) b.serverGone = true;
      if (b.client === w) b.clientGone = true;
      const survivor = b.server === w ? b.client : b.server;
      if (this.#workers.get(survivor.id) === survivor) forceDoorbell(survivor.bellView);
    }
    this.#blocksReclaimed += this.#heap.freeWhere((owner) => {
      const b = this.#bindings.get(ownerBinding(owner));
      if (!b) return false;
      const side = ownerSide(owner);
      return (side === SERVER_SIDE && b.serverGone) || (side === CLIENT_SIDE && b.clientGone);
    });
    // A dead binding is forgotten as soon as one side is gone: that side's blocks were freed
    // above, and the survivor frees its own when it tears the binding down. Keeping it until
    // both sides die would hold one entry and its rings per engine restart, for ever.
    for (const [id, b] of this.#bindings) {
      if (b.serverGone || b.clientGone) this.#bindings.delete(id);
    }
  }

  /** Bindings currently open, as [server, client] worker ids. */
  bindings(): { bindingId: number; server: string; client: string; open: boolean }[] {
    return [...this.#bindings.values()].map((b) => ({
      bindingId: b.id,
      server: b.server.id,
      client: b.client.id,
      open: bindingState(b.view) === OPEN,
    }));
  }

  stats(): QueueManagerStats {
    let open = 0;
    for (const b of this.#bindings.values()) if (bindingState(b.view) === OPEN) open++;
    return {
      heapBytes: this.#heap.units * UNIT_BYTES,
      heapUsedBytes: this.#heap.usedBytes,
      heapBlocks: this.#heap.blocks,
      bindings: open,
      workers: this.#workers.size,
      workersGone: this.#workersGone,
      blocksReclaimed: this.#blocksReclaimed,
    };
  }

  #worker(id: string): WorkerEntry {
    let w = this.#workers.get(id);
    if (!w) {
      const bell = createDoorbell();
      w = { id, tag: this.#nextTag++, bell, bellView: new Int32Array(bell) };
      this.#workers.set(id, w);
    }
    return w;
  }
}

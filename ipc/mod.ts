// ExIPC, the room's entry: shared-memory rings and heap between the engines and the store.
// Supervisor (main thread): `new QueueManager(metabase.ipc)`, `bind`, `workerGone`, `stats`.
// Engine workers: `attachStoreClient(descriptor)`. Store worker: `serveStore(descriptor, service)`.
export { QueueManager, type QueueManagerOptions, type QueueManagerStats } from "./queue-manager.ts";
export { type BindingDescriptor, isBindingDescriptor } from "./binding.ts";
export { type AttachedStoreClient, attachStoreClient } from "./client.ts";
export { droppedEvents, type ServedBindingHandle, serveStore } from "./server.ts";
export { createDirectStoreClient, type StoreClient, type StoreService } from "./store-client.ts";
export { StoreError } from "./store-api.ts";

// The metabase room: the schema, loading with precise errors, atomic edits, watching, and
// the file `posthorn init` writes.
export * from "./schema.ts";
export * from "./load.ts";
export * from "./watch.ts";
export * from "./defaults.ts";

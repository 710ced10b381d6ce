// Listing a metabase's listeners per engine, for commands that run without a server.
import { ENGINES, type Metabase } from "../metabase/mod.ts";
import { listenersOf } from "../supervisor/engines.ts";

export { ENGINES };
export const listenersOfInput = (mb: Metabase, engine: string) => listenersOf(mb, 0, engine);

/** The `snapshot.meta` header of a heap snapshot, checked. */
import type { SnapshotMeta } from './snapshot.js';

export function parseMeta(header: unknown, fail: (what: string) => never): SnapshotMeta {
  if (typeof header !== 'object' || header === null) fail('the "snapshot" header is not an object');
  const h = header as Record<string, unknown>;
  const meta = h.meta as Record<string, unknown> | undefined;
  if (typeof meta !== 'object' || meta === null) fail('no "snapshot.meta"');
  const strArr = (v: unknown, name: string): string[] => {
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'string')) fail(`"snapshot.meta.${name}" is not a list of names`);
    return v as string[];
  };
  const nodeFields = strArr(meta.node_fields, 'node_fields');
  const edgeFields = strArr(meta.edge_fields, 'edge_fields');
  for (const f of ['type', 'name', 'self_size', 'edge_count']) if (!nodeFields.includes(f)) fail(`node_fields lacks "${f}"`);
  for (const f of ['type', 'name_or_index', 'to_node']) if (!edgeFields.includes(f)) fail(`edge_fields lacks "${f}"`);
  const nt = meta.node_types as unknown[];
  const et = meta.edge_types as unknown[];
  if (!Array.isArray(nt) || !Array.isArray(et)) fail('"snapshot.meta" lacks node_types/edge_types');
  const nodeTypes = strArr(nt[nodeFields.indexOf('type')], 'node_types');
  const edgeTypes = strArr(et[edgeFields.indexOf('type')], 'edge_types');
  const count = (v: unknown, name: string): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`"snapshot.${name}" is not a count`);
    return v;
  };
  const nodeCount = count(h.node_count, 'node_count');
  const edgeCount = count(h.edge_count, 'edge_count');
  if (nodeCount === 0) fail('the snapshot has no nodes');
  return { nodeFields, edgeFields, nodeTypes, edgeTypes, nodeCount, edgeCount };
}

/**
 * The codec: msgpackr's one home. Batch envelopes are msgpack maps whose numeric columns are typed arrays
 * (msgpackr's typed-array extension copies them as raw bytes), so a batch of ops costs a memcpy, not a
 * per-number encode (plain number arrays encode at about 18 M numbers/s; typed columns at memcpy speed).
 *
 * Imported by worker threads: imports nothing main-only.
 */
import { Packr } from 'msgpackr';

const packr = new Packr({ moreTypes: true, useRecords: false, structuredClone: false });

/** Encodes a value into a fresh, exclusively owned byte array (safe to transfer to another thread). */
export function encode(value: unknown): Uint8Array {
  const bytes = packr.pack(value);
  // pack() returns a view into msgpackr's reusable buffer: copy it out so the next pack cannot overwrite it.
  return new Uint8Array(bytes);
}

/** Decodes bytes produced by {@link encode}. */
export function decode<T>(bytes: Uint8Array): T {
  return packr.unpack(bytes) as T;
}

/**
 * An encoder of many maps that share fields: `shared` is encoded once, and each call encodes only `key` and
 * its value. The bytes equal encode({ ...shared, [key]: value }) (a map's entries follow its header, in
 * insertion order; msgpackr writes a plain object as a map16): a persist of a million ids encodes their
 * common fields once instead of a million times.
 */
export function sharedMapEncoder(shared: Readonly<Record<string, unknown>>, key: string): (value: unknown) => Uint8Array {
  const fields = Object.keys(shared).length;
  if (Object.hasOwn(shared, key)) throw new RangeError(`sharedMapEncoder: "${key}" is a shared field`);
  const head = encode(shared);
  const map16 = head[0] === 0xde && head[1] === fields >> 8 && head[2] === (fields & 0xff);
  const fixmap = head[0] === (0x80 | fields) && fields < 15;
  if (!map16 && !fixmap) throw new RangeError(`sharedMapEncoder: ${fields} shared fields encode in a map header it cannot extend`);
  const name = encode(key);
  return (value) => {
    const body = packr.pack(value);
    const out = new Uint8Array(head.length + name.length + body.length);
    out.set(head);
    // The header, one entry more.
    if (map16) {
      out[1] = (fields + 1) >> 8;
      out[2] = (fields + 1) & 0xff;
    } else out[0] = 0x80 | (fields + 1);
    out.set(name, head.length);
    out.set(body, head.length + name.length);
    return out;
  };
}

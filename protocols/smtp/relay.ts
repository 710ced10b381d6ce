// The relay rule: who may send to remote domains. Authenticated users and clients whose address
// falls in one of the connector's relayNetworks (CIDR); nobody else, so the server is never an
// open relay (RFC 5321 §3.6.2, RFC 2505 §2.1).

/** An address as bytes: 4 for IPv4, 16 for IPv6; null when unparsable. */
export function parseIp(text: string): Uint8Array | null {
  const s = text.trim().replace(/%.*$/, ""); // drop an IPv6 zone id ("fe80::1%eth0")
  if (s.includes(":")) return parseIpv6(s);
  return parseIpv4(s);
}

function parseIpv4(s: string): Uint8Array | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return null;
    out[i] = Number(p);
  }
  return out;
}

function parseIpv6(s: string): Uint8Array | null {
  let groups: number[] = [];
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const parseHalf = (h: string): number[] | null => {
    if (h === "") return [];
    const out: number[] = [];
    const items = h.split(":");
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseIpv4(item);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return null;
        out.push(parseInt(item, 16));
      }
    }
    return out;
  };
  const head = parseHalf(halves[0]!);
  const tail = halves.length === 2 ? parseHalf(halves[1]!) : [];
  if (!head || !tail) return null;
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return null;
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else groups = head;
  if (groups.length !== 8) return null;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** ::ffff:a.b.c.d is the IPv4 client a.b.c.d (dual-stack sockets report it that way). */
function unmapV4(ip: Uint8Array): Uint8Array {
  if (ip.length !== 16) return ip;
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return ip;
  if (ip[10] !== 0xff || ip[11] !== 0xff) return ip;
  return ip.subarray(12);
}

/** True when `address` lies in `cidr` ("10.0.0.0/8", "::1", "fd00::/8"). */
export function inNetwork(address: string, cidr: string): boolean {
  const slash = cidr.indexOf("/");
  const netText = slash < 0 ? cidr : cidr.slice(0, slash);
  const ipRaw = parseIp(address);
  const netRaw = parseIp(netText);
  if (!ipRaw || !netRaw) return false;
  const ip = unmapV4(ipRaw);
  const net = unmapV4(netRaw);
  if (ip.length !== net.length) return false;
  const bits = slash < 0 ? net.length * 8 : Number(cidr.slice(slash + 1));
  if (!Number.isInteger(bits) || bits < 0 || bits > net.length * 8) return false;
  for (let i = 0; i < net.length; i++) {
    const take = Math.max(0, Math.min(8, bits - i * 8));
    if (take === 0) break;
    const mask = (0xff << (8 - take)) & 0xff;
    if ((ip[i]! & mask) !== (net[i]! & mask)) return false;
  }
  return true;
}

export function inAnyNetwork(address: string, networks: readonly string[]): boolean {
  return networks.some((n) => inNetwork(address, n));
}

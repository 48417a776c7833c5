import { lookup as dnsLookup, promises as dnsPromises } from 'node:dns';
import type { LookupAddress, LookupOneOptions, LookupAllOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';

/**
 * Addresses a pull must not reach unless the operator lists the registry as insecure: loopback,
 * private (RFC 1918, unique local), link-local, carrier-grade NAT, benchmarking, multicast,
 * reserved and unspecified ranges.
 */
const NON_PUBLIC = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  NON_PUBLIC.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['::ffff:0:0', 96],
  ['64:ff9b::', 96],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  NON_PUBLIC.addSubnet(net, prefix, 'ipv6');
}

/** Whether an IP address is on the public internet (not loopback, private, link-local, …). */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return !NON_PUBLIC.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** Whether `host` (a URL's `host`: name or address, with `:port` when not the default) is in the operator's list. */
export function isListedRegistry(host: string, insecureRegistries: readonly string[]): boolean {
  const wanted = host.toLowerCase();
  return insecureRegistries.some((entry) => entry.toLowerCase() === wanted);
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for `http.request` that resolves a name and keeps only public addresses, so the
 * connection goes to an address that was checked (no second resolution an attacker's DNS could
 * answer differently). With `allowNonPublic` every address is kept.
 */
export function guardedLookup(allowNonPublic: boolean) {
  return (hostname: string, options: LookupOneOptions | LookupAllOptions, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) {
        callback(error, '');
        return;
      }
      const usable = allowNonPublic ? addresses : addresses.filter((a) => isPublicAddress(a.address));
      const first = usable[0];
      if (!first) {
        const refused: NodeJS.ErrnoException = new Error(`${hostname} resolves only to loopback, private or link-local addresses`);
        refused.code = 'ENONPUBLIC';
        callback(refused, '');
        return;
      }
      if (options.all === true) callback(null, usable);
      else callback(null, first.address, first.family);
    });
  };
}

/**
 * Refuses a registry (as written in an image name) whose host is, or resolves to, a loopback,
 * private or link-local address, unless the operator listed it. For pulls another program makes
 * (the Docker engine), where the connection itself cannot be checked.
 */
export async function checkRegistryAddress(registryHost: string, insecureRegistries: readonly string[]): Promise<void> {
  if (isListedRegistry(registryHost, insecureRegistries)) return;
  const hostname = new URL(`https://${registryHost}`).hostname.replace(/^\[|\]$/g, '');
  const addresses = isIP(hostname) !== 0 ? [hostname] : (await dnsPromises.lookup(hostname, { all: true })).map((a) => a.address);
  const blocked = addresses.find((a) => !isPublicAddress(a));
  if (blocked !== undefined) {
    throw new Error(`registry ${registryHost} is at a loopback, private or link-local address (allow it with CORRAL_REGISTRY_INSECURE)`);
  }
}

import { Duplex } from 'node:stream';

/**
 * A Duplex that Node's `http.request`/`http.Server` accept in place of a socket: they call these
 * socket methods, which mean nothing for a stream relayed through an exec or a tunnel link.
 */
export abstract class SocketLikeDuplex extends Duplex {
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  setTimeout(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
}

import base64, hashlib, socket, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path.startswith('/stream'):
            self.send_response(200); self.send_header('Content-Type', 'text/plain'); self.send_header('Transfer-Encoding', 'chunked'); self.end_headers()
            for i in range(int(self.path.split('/')[-1] or 3)):
                data = ('tick %d\n' % i).encode()
                self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data)); self.wfile.flush(); time.sleep(0.3)
            self.wfile.write(b'0\r\n\r\n'); return
        if self.path == '/ws' and self.headers.get('Upgrade', '').lower() == 'websocket':
            key = self.headers['Sec-WebSocket-Key']
            acc = base64.b64encode(hashlib.sha1((key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').encode()).digest()).decode()
            self.wfile.write(('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n' % acc).encode()); self.wfile.flush()
            r = self.rfile
            while True:
                h = r.read(2)
                if len(h) < 2: return
                op = h[0] & 0x0f; n = h[1] & 0x7f
                if n == 126: n = struct.unpack('>H', r.read(2))[0]
                elif n == 127: n = struct.unpack('>Q', r.read(8))[0]
                mask = r.read(4); p = bytearray(r.read(n))
                for i in range(n): p[i] ^= mask[i % 4]
                if op == 8: return
                hdr = bytes([0x80 | op]) + (bytes([n]) if n < 126 else struct.pack('>BH', 126, n) if n < 65536 else struct.pack('>BQ', 127, n))
                self.wfile.write(hdr + bytes(p)); self.wfile.flush()
        body = ('hello from %s host=%s\n' % (self.path, self.headers.get('Host'))).encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get('Content-Length', 0)); h = hashlib.sha256(); left = n
        while left > 0:
            d = self.rfile.read(min(left, 65536))
            if not d: break
            h.update(d); left -= len(d)
        body = ('%d %s\n' % (n - left, h.hexdigest())).encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)

ThreadingHTTPServer(('0.0.0.0', int(sys.argv[1])), H).serve_forever()

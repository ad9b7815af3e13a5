"""A webhook receiver for the tests: verifies Standard Webhooks signatures and records every
request (path, webhook-id, event type, whether the signature is valid) as a JSON line.
  /ok       answers 204
  /flaky    answers 500 three times, then 204
  /refuse   always answers 500
  /hang     answers after 60 s
usage: python3 webhook_receiver.py SECRET LOG  (prints the port it listens on)"""
import base64, hashlib, hmac, http.server, json, sys, threading, time

secret, log = sys.argv[1], sys.argv[2]
key = base64.b64decode(secret[len("whsec_"):]) if secret.startswith("whsec_") else secret.encode()
lock = threading.Lock()
calls = {}

class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        msg_id, ts = self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", "0")
        expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
        given = [s.split(",", 1)[1] for s in self.headers.get("webhook-signature", "").split() if s.startswith("v1,")]
        valid = any(hmac.compare_digest(expected, g) for g in given) and abs(time.time() - int(ts)) < 300
        with lock:
            calls[self.path] = calls.get(self.path, 0) + 1
            n = calls[self.path]
            with open(log, "a") as f:
                data = json.loads(body)
                f.write(json.dumps({"path": self.path, "id": msg_id, "type": data["type"], "valid": valid,
                                    "status": data["data"].get("status"), "data": data["data"]}) + "\n")
        if self.path == "/hang":
            time.sleep(60)
        code = 204
        if self.path == "/refuse" or (self.path == "/flaky" and n <= 3):
            code = 500
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()

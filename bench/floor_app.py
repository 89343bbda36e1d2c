"""The floor: the least a user would build by hand to hand out pre-signed S3 PUTs.

One Flask view that parses the JSON body and returns boto3's ``generate_presigned_url`` — no auth, no
database, no rate limiter. Served by gunicorn exactly like the real service (``bench.floor_app:app``).
Like ``wsgi.py``, the module-level ``app`` reads its settings from the environment when imported.
"""

from __future__ import annotations

import os
import uuid

from flask import Flask, Response, jsonify, request

from adapters.s3_storage import make_s3_client

URL_TTL_SECONDS = 300


def create_app() -> Flask:
    bucket = os.environ["UPLOADS_BUCKET"]
    # Same SigV4 / timeout / retry / addressing configuration as the service's client.
    client = make_s3_client(
        region=os.environ.get("AWS_REGION", "us-east-1"),
        endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
    )
    app = Flask("floor")

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.post("/v1/uploads")
    def issue() -> tuple[Response, int]:
        body = request.get_json(force=True)
        url = client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": bucket,
                "Key": f"uploads/floor/{uuid.uuid4().hex}",
                "ContentType": body["content_type"],
                "ContentLength": body["content_length"],
            },
            ExpiresIn=URL_TTL_SECONDS,
        )
        return jsonify(url=url), 201

    return app


app = create_app()

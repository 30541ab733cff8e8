"""Credentials given in the environment and in storage options never reach an output object,
the manifest, the metadata, a failure reason or a log line."""

from __future__ import annotations

import json
import logging

import pyarrow.parquet as pq
import s3fs

import colphot
from colphot.cli import main

ENV_KEY = "colphot-env-key-3b9e1a"
ENV_SECRET = "colphot-env-secret-51c7d2e0"
OPT_SECRET = "colphot-test-secret-9f3c1b7e"  # conftest's s3_options secret


def test_no_credentials_anywhere(survey, s3_options, s3_endpoint, s3_bucket, monkeypatch,
                                 caplog, capsys):
    fs = s3fs.S3FileSystem(**s3_options)
    fs.put(survey.root + "/", f"{s3_bucket}/survey", recursive=True)
    fs.pipe(f"{s3_bucket}/survey/tiles/g/0/9.fits", b"SIMPLE  = broken" + b" " * 3000)
    fs.invalidate_cache()
    root = f"s3://{s3_bucket}/survey"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ENV_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    caplog.set_level(logging.DEBUG, logger="distributed")
    caplog.set_level(logging.DEBUG, logger="colphot")
    # credentials from the environment only (the workers inherit it), then from options
    env_only = {"endpoint_url": s3_endpoint}
    outs = []
    for options, out in ((env_only, f"{root}/out-env"), (s3_options, f"{root}/out-opt")):
        summary = colphot.run(f"{root}/tiles/{{band}}/{{tract}}/{{patch}}.fits", f"{root}/refs",
                              out, storage_options=options, n_workers=1, retries=0,
                              progress=True, in_band=f"{root}/in_band")
        assert summary.n_failed == 1 and summary.n_measured == len(survey.tile_paths)
        outs.append((out, summary))
    code = main(["run", "--tiles", f"{root}/tiles/{{band}}/{{tract}}/{{patch}}.fits", "--refs",
                 f"{root}/refs", "--out", f"{root}/out-cli", "--workers", "1"])
    assert code == 1
    outs.append((f"{root}/out-cli", None))
    secrets = [ENV_KEY, ENV_SECRET, OPT_SECRET]
    seen = [caplog.text, json.dumps([str(s) for _, s in outs]), *capsys.readouterr()]
    for out, summary in outs:
        fs.invalidate_cache()
        for path in fs.find(out[5:]):
            raw = fs.cat(path)
            seen.append(raw.decode("latin-1"))
            if path.endswith((".parquet", "_common_metadata")):
                with fs.open(path, "rb") as f:
                    seen.append(str(pq.read_schema(f).metadata))
        if summary is not None:
            seen += [r.error or "" for r in summary.failed]
    text = "\n".join(seen)
    assert "9.fits" in text  # the failure was reported somewhere we looked
    for secret in secrets:
        assert secret not in text, secret

"""Connecting to Temporal by its own client configuration (temporalio.envconfig): a profile in
a TOML file gives TLS with client certificates (mTLS); notifyflow's settings give the address,
namespace and API key on top; an API key always means TLS."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from notifyflow.config import Settings, SettingsError
from notifyflow.worker import temporal_connect_options


def test_a_profile_with_client_certificates_gives_mtls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    config = tmp_path / "temporal.toml"
    config.write_text(
        "[profile.prod]\n"
        'address = "ignored.example:7233"\n'
        'namespace = "ignored"\n'
        "[profile.prod.tls]\n"
        f'client_cert_path = "{cert}"\n'
        f'client_key_path = "{key}"\n'
        'server_name = "prod.tmprl.cloud"\n'
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    options = temporal_connect_options(
        Settings(TEMPORAL_ADDRESS="acme.a1b2c.tmprl.cloud:7233", TEMPORAL_NAMESPACE="acme.a1b2c")
    )
    assert options["target_host"] == "acme.a1b2c.tmprl.cloud:7233"
    assert options["namespace"] == "acme.a1b2c"
    tls = options["tls"]
    assert tls.client_cert.startswith(b"-----BEGIN CERTIFICATE")
    assert tls.client_private_key.startswith(b"-----BEGIN PRIVATE KEY")
    assert tls.domain == "prod.tmprl.cloud"


def test_an_api_key_means_tls_and_nothing_else_means_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TEMPORAL_PROFILE", raising=False)
    plain = temporal_connect_options(Settings(TEMPORAL_ADDRESS="127.0.0.1:7233"))
    assert not plain.get("tls") and not plain.get("api_key")
    keyed = temporal_connect_options(
        Settings(TEMPORAL_ADDRESS="x.tmprl.cloud:7233", TEMPORAL_API_KEY=SecretStr("k-123"))
    )
    assert keyed["api_key"] == "k-123" and keyed["tls"] is True


def test_a_malformed_profile_file_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "temporal.toml"
    bad.write_text("[profile.default\naddress = ")
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(bad))
    with pytest.raises(SettingsError) as refused:
        temporal_connect_options(Settings())
    assert str(refused.value).startswith("TEMPORAL_CONFIG_FILE: ")

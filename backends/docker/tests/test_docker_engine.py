"""The test infrastructure itself: both private engines run the imported busybox image.

These tests use the docker SDK directly (no driver): they prove the fixtures the driver and
contract tests build on.
"""

from __future__ import annotations

from docker_helpers import SLEEPER, Engine, wait_for


def test_engine_runs_pauses_and_stops_a_container(engine: Engine) -> None:
    client = engine.client()
    try:
        version = client.version()
        components = [c.get("Name", "") for c in version.get("Components", [])]
        assert ("Podman Engine" in components) == (engine.kind == "podman")
        created = client.api.create_container(
            engine.image,
            command=SLEEPER,
            name="engine-probe",
            host_config=client.api.create_host_config(network_mode="none"),
        )
        client.api.start(created["Id"])
        wait_for(lambda: client.api.inspect_container(created["Id"])["State"]["Running"], 30, "the container to run")
        exec_id = client.api.exec_create(created["Id"], ["uname", "-s"])
        assert client.api.exec_start(exec_id).strip() == b"Linux"
        client.api.pause(created["Id"])
        assert client.api.inspect_container(created["Id"])["State"]["Paused"] is True
        client.api.unpause(created["Id"])
        client.api.stop(created["Id"], timeout=10)
        assert client.api.inspect_container(created["Id"])["State"]["Running"] is False
        client.api.remove_container(created["Id"])
        assert client.api.containers(all=True, filters={"name": "engine-probe"}) == []
    finally:
        client.close()

"""The Compose driver's pure parts: reading how Compose ran a project from its labels, and
refusing to act without the Compose CLI (no engine needed for either)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from smartops_nb.actions import RECOMMENDED, decide
from smartops_nb.contract import ParameterError
from smartops_nb.params import check_values
from smartops_nb.mitigations import deployment, platform as platform_actions
from smartops_nb.platforms import PlatformError, connect, workload
from smartops_nb.platforms.compose import ComposePlatform, ComposeProject, replica_number

LABELS = {
    "com.docker.compose.project": "shop",
    "com.docker.compose.service": "backend",
    "com.docker.compose.container-number": "2",
    "com.docker.compose.project.config_files": "docker-compose.yml,/etc/shop/override.yml",
    "com.docker.compose.project.working_dir": "/srv/shop",
}


def test_project_from_labels_resolves_relative_config_files():
    p = ComposeProject.from_labels(LABELS)
    assert p == ComposeProject("shop", ("/srv/shop/docker-compose.yml", "/etc/shop/override.yml"), "/srv/shop")
    assert p.argv("docker-compose", "restart", "backend") == [
        "docker-compose", "-p", "shop", "-f", "/srv/shop/docker-compose.yml", "-f", "/etc/shop/override.yml",
        "--project-directory", "/srv/shop", "restart", "backend"]


def test_env_file_and_extra_files_are_passed_once():
    p = ComposeProject.from_labels({**LABELS, "com.docker.compose.project.environment_file": "/srv/shop/.env"})
    argv = p.argv("docker-compose", "ps", extra_files=("/srv/shop/x.yml", "/etc/shop/override.yml"))
    assert argv.count("/etc/shop/override.yml") == 1 and "/srv/shop/x.yml" in argv
    assert argv[argv.index("--env-file") + 1] == "/srv/shop/.env"


def test_labels_without_a_project_folder_are_an_error():
    with pytest.raises(PlatformError, match="working_dir"):
        ComposeProject.from_labels({"com.docker.compose.project": "shop"})


@pytest.mark.parametrize("value, number", [("3", 3), ("", 0), ("x", 0), (None, 0)])
def test_replica_number(value, number):
    assert replica_number({} if value is None else {"com.docker.compose.container-number": value}) == number


class Params(SimpleNamespace):
    """Just enough of the runbook's parameters object: attributes, and ``in`` for declared names."""

    def __contains__(self, name: str) -> bool:
        return hasattr(self, name)


def test_components_map_to_services_on_compose():
    p = Params(platform="compose", api_service="backend", db_service="postgres", compose_project="shop",
               docker_host="")
    assert workload(p, "api") == "backend" and workload(p, "db") == "postgres"
    assert isinstance(connect(p), ComposePlatform)


def test_without_the_cli_restart_scale_and_rollback_are_refused():
    engine = ComposePlatform("shop", base_url="unix:///nonexistent.sock", cli="")
    assert "docker-compose" in engine.cannot_act() and "not installed" in engine.cannot_act()
    with pytest.raises(PlatformError, match="not installed"):
        engine._compose(SimpleNamespace(labels=LABELS), "restart backend", "restart", "backend")
    p = Params(platform="compose", api_service="backend", api_url="")
    for action in (platform_actions.restart(p, lambda: engine, "api", "restart-api"),
                   platform_actions.scale(p, lambda: engine, "api", "scale-api", 3),
                   deployment.rollback(p, lambda: engine)):
        decision, reason = decide(action, mode="mitigate", approved=[action.name])
        assert decision == RECOMMENDED and "not installed" in reason, action.name


def test_platform_compose_needs_a_project():
    with pytest.raises(ParameterError, match="compose_project"):
        check_values({"platform": "compose"})
    check_values({"platform": "compose", "compose_project": "shop"})


def test_config_files_missing_here_refuse_the_action(tmp_path):
    engine = ComposePlatform("shop", cli="/usr/bin/docker-compose")
    labels = {**LABELS, "com.docker.compose.project.working_dir": str(tmp_path)}
    with pytest.raises(PlatformError, match="not on this machine"):
        engine._compose(SimpleNamespace(labels=labels), "restart backend", "restart", "backend")

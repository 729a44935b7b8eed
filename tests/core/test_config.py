import pytest

from llmflow_core import config
from llmflow_core.config import ConfigError, load, parse_size


@pytest.mark.parametrize("text,expected", [("1MB", 1048576), ("512KB", 524288), ("2048", 2048),
                                           ("1.5mb", 1572864), ("1 GiB", 1073741824), ("10b", 10)])
def test_sizes(text, expected):
    assert parse_size(text) == expected


def test_defaults():
    cfg = load({})
    assert (cfg.port, cfg.proxy_port, cfg.retention_days, cfg.max_response_size) == (3000, 8080, 30, 1048576)
    assert cfg.mongo_uri == "" and cfg.uses_default_credentials
    assert cfg.upstreams["openai"] == "https://api.openai.com"
    assert cfg.sqlite_path.name == "llmflow.sqlite3"


@pytest.mark.parametrize("env,fragment", [
    ({"MAX_RESPONSE_SIZE": "lots"}, "MAX_RESPONSE_SIZE='lots' is not valid: expected a size such as 1MB, 512KB"),
    ({"PORT": "99999"}, "PORT='99999' is not valid"),
    ({"RETENTION_DAYS": "-1"}, "RETENTION_DAYS"),
    ({"DEBUG": "maybe"}, "DEBUG"),
    ({"UPSTREAM_GROQ": "ftp://x"}, "UPSTREAM_GROQ"),
    ({"UPSTREAM_B@D": "http://x"}, "UPSTREAM_B@D"),
])
def test_bad_values_name_the_variable(env, fragment):
    with pytest.raises(ConfigError) as caught:
        load(env)
    assert fragment in str(caught.value)


def test_custom_upstreams_define_routes():
    cfg = load({"UPSTREAM_VLLM": "http://gpu-box:8000/", "UPSTREAM_OPENAI": "http://127.0.0.1:9"})
    assert cfg.upstreams["vllm"] == "http://gpu-box:8000"
    assert cfg.upstreams["openai"] == "http://127.0.0.1:9"


def test_describe_masks_secrets():
    env = {"MONGO_URI": "mongodb://u:hunter2@db:27017/llmflow", "AUTH_PASSWORD": "s3cret", "SECRET_KEY": "k"}
    shown = dict(config.describe(load(env), env))
    assert shown["MONGO_URI"] == "mongodb://u:****@db:27017/llmflow"
    assert shown["AUTH_PASSWORD"] == "****" and shown["SECRET_KEY"] == "****"
    assert "hunter2" not in str(shown) and "s3cret" not in str(shown)

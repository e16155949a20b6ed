"""Each SDK installed the way its ecosystem installs packages, in a fresh folder outside the repo,
running the API reference's example (key and model swapped in) against this session's server:

- Python: ``python -m build`` makes an sdist and, from it (outside the checkout), a wheel: the
  generated stubs travel in the sdist, not in git; a new venv installs it with ``[grpc]`` and runs the
  reference example and the README's gRPC snippet.
- TypeScript: ``npm pack`` (its ``prepare`` script builds dist/); a new project installs the tarball,
  compiles a user's file with ``tsc --strict`` (``catch`` gives ``unknown``: ``instanceof`` on the
  SDK's error classes) and runs it with node.
- Go: a new module requires the SDK with the README's ``go mod edit -replace`` and builds and runs
  the reference example.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from gateway.app import RunningPlatform
from server.keys import CreatedKey
from tests.conftest import MODEL
from tests.subprocess_support import run

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "clients"
pytestmark = pytest.mark.sqlite_only  # the packages do not see the store: once is enough


def readme_block(readme: Path, language: str) -> str:
    """The first ```language code block of a README."""
    return readme.read_text().split(f"```{language}\n", 1)[1].split("```", 1)[0]


def readme_env(base_url: str, key: CreatedKey) -> dict[str, str]:
    """What a README's local example needs: the server (``make run``'s, here this session's) and
    the key it printed."""
    return {"PLUTOS_BASE_URL": base_url, "PLUTOS_API_KEY": key.secret}


def _swap(text: str, key: CreatedKey) -> str:
    return text.replace("your-api-key", key.secret).replace("gpt-4", MODEL).replace("100", "8")


PYTHON_REFERENCE = """
from plutos_ai import PlutosAI

client = PlutosAI(
    api_key="your-api-key",
    environment="production"
)

try:
    result = client.process_data(
        input="What is the capital of France?",
        model="gpt-4",
        options={
            "temperature": 0.7,
            "max_tokens": 100
        }
    )

    print(result.output)
except Exception as e:
    print(f"Error: {e}")
    raise SystemExit(1)
"""


async def test_python_wheel_installs_in_a_fresh_venv(
    tmp_path: Path, base_url: str, platform: RunningPlatform, key: CreatedKey
) -> None:
    dist = tmp_path / "dist"
    code, out, err = await run(
        sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(CLIENTS / "python")
    )
    assert code == 0, out + err
    (wheel,) = dist.glob("plutos_ai-*.whl")
    venv = tmp_path / "venv"
    code, out, err = await run(sys.executable, "-m", "venv", str(venv))
    assert code == 0, err
    python = str(venv / "bin" / "python")
    code, out, err = await run(python, "-m", "pip", "install", "-q", f"{wheel}[grpc]", timeout=600)
    assert code == 0, out + err
    example = tmp_path / "example.py"
    example.write_text(_swap(PYTHON_REFERENCE, key))
    code, out, err = await run(python, str(example), env={"PLUTOS_BASE_URL": base_url}, timeout=600)
    assert code == 0, out + err
    assert out.strip(), "the example printed no output"
    # The SDK README's first example, as written (a new user's first try used gpt-4 and production).
    readme = tmp_path / "readme_example.py"
    readme.write_text(readme_block(CLIENTS / "python" / "README.md", "python"))
    code, out, err = await run(python, str(readme), env=readme_env(base_url, key), timeout=600)
    assert code == 0, out + err
    assert out.strip()
    # The README's gRPC snippet, with what plutos-ai[grpc] installs.
    snippet = (ROOT / "README.md").read_text().split("```python\n", 2)
    grpc_snippet = next(block.split("```", 1)[0] for block in snippet[1:] if "grpc" in block.split("```", 1)[0])
    grpc_file = tmp_path / "grpc_snippet.py"
    grpc_file.write_text(
        f"key = {key.secret!r}\n"
        + grpc_snippet.replace("localhost:50051", f"127.0.0.1:{platform.grpc_port}").replace(
            "smollm2-135m-instruct", MODEL
        )
        + "\nprint(reply.output)\n"
    )
    code, out, err = await run(python, str(grpc_file), env={"PYTHONPATH": ""}, timeout=600)
    assert code == 0, out + err
    assert out.strip()


TYPESCRIPT_USER = """
import { PlutosAI, PlutosError, InvalidModelError, type ProcessResponse } from '@plutos-ai/sdk';

declare const process: { env: Record<string, string | undefined>; exitCode?: number };

const client = new PlutosAI({ apiKey: process.env.KEY, environment: 'production' });

try {
  const result: ProcessResponse = await client.processData({
    input: 'What is the capital of France?',
    model: process.env.MODEL ?? '',
    options: { temperature: 0.7, maxTokens: 8 },
  });
  const id: string = result.id;
  const ms: number = result.processingTime;
  // Always sent, so not optional in the types (no `?.` needed under --strict):
  const tokens: number = result.usage.totalTokens;
  const created: string = result.createdAt;
  const requestId: string | undefined = result._requestId;
  const sane = ms >= 0 && tokens > 0 && created.endsWith('Z');
  console.log(id.startsWith('proc_'), sane, requestId?.startsWith('req_'), result.output);
} catch (error) {
  if (error instanceof PlutosError) {
    console.error('failed:', error.code, error.message, error.requestId);
    process.exitCode = 1;
  } else {
    throw error;
  }
}

try {
  await client.processData({ input: 'x', model: 'no-such-model' });
  process.exitCode = 1;
} catch (error) {
  if (error instanceof InvalidModelError && error.status === 400) {
    console.log('invalid model:', error.code);
  } else {
    throw error;
  }
}
"""


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
async def test_typescript_tarball_installs_in_a_fresh_project(tmp_path: Path, base_url: str, key: CreatedKey) -> None:
    package = CLIENTS / "typescript"
    tsc = package / "node_modules" / "typescript" / "bin" / "tsc"
    if not tsc.exists():
        pytest.fail("clients/typescript/node_modules missing: run `make sdk-deps`")
    code, out, err = await run(
        "npm", "pack", "--silent", "--pack-destination", str(tmp_path), cwd=str(package), timeout=600
    )
    assert code == 0, out + err
    (tarball,) = tmp_path.glob("plutos-ai-sdk-*.tgz")  # noqa: ASYNC240
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "user-app", "private": True, "type": "module"}))
    code, out, err = await run(
        "npm", "install", "--no-audit", "--no-fund", "--offline", str(tarball), cwd=str(project), timeout=600
    )
    assert code == 0, out + err
    (project / "app.ts").write_text(TYPESCRIPT_USER)
    # The SDK README's first example, as written; Node's `process` declared (no @types/node here).
    readme_example = readme_block(package / "README.md", "ts")
    node_process = "declare const process: { stdout: { write(s: string): void } };\n"
    (project / "readme.ts").write_text(node_process + readme_example)
    (project / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "strict": True,
                    "target": "es2022",
                    "module": "nodenext",
                    "moduleResolution": "nodenext",
                    "lib": ["es2022", "dom"],
                    "outDir": "out",
                    "skipLibCheck": False,  # the SDK's declarations compile under --strict too
                },
                "files": ["app.ts", "readme.ts"],
            }
        )
    )
    code, out, err = await run("node", str(tsc), "-p", str(project), cwd=str(project))
    assert code == 0, out + err
    code, out, err = await run(
        "node",
        str(project / "out" / "app.js"),
        cwd=str(project),
        env={"PLUTOS_BASE_URL": base_url, "KEY": key.secret, "MODEL": MODEL},
        timeout=600,
    )
    assert code == 0, out + err
    assert out.startswith("true true true ") and "invalid model: invalid_model" in out, out
    code, out, err = await run(
        "node", str(project / "out" / "readme.js"), cwd=str(project), env=readme_env(base_url, key), timeout=600
    )
    assert code == 0, out + err
    assert "tokens, id proc_" in out, out


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
async def test_go_reference_example_builds_in_a_separate_module(tmp_path: Path, base_url: str, key: CreatedKey) -> None:
    app = tmp_path / "app"
    app.mkdir()
    source = (CLIENTS / "go" / "examples" / "quickstart" / "main.go").read_text()
    (app / "main.go").write_text(_swap(source, key))
    sdk = CLIENTS / "go"
    steps = [
        "go mod init example.com/app",
        # The README's steps for a self-hosted checkout:
        f"go mod edit -require=github.com/plutos-ai/go-sdk@v0.0.0 -replace=github.com/plutos-ai/go-sdk={sdk}",
        "go mod tidy",
        "go build -o app .",
    ]
    for step in steps:
        code, out, err = await run("bash", "-c", step, cwd=str(app), timeout=600)
        assert code == 0, f"{step}:\n{out}{err}"
    code, out, err = await run(str(app / "app"), cwd=str(app), env={"PLUTOS_BASE_URL": base_url}, timeout=600)
    assert code == 0, out + err
    assert out.strip()

// Regenerates src/gen/ from ../../protos with ts-proto (types only: the SDK speaks REST/JSON).
//
// protoc is grpcio-tools' bundled one (`python -m grpc_tools.protoc`); the Python comes from
// $PYTHON, else the repository's .venv, else `python3`. It needs grpcio-tools and
// googleapis-common-protos installed (they ship google/api/*.proto and the well-known types).
// The output depends only on the protos and the versions pinned in package.json / grpcio-tools.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const repoRoot = resolve(pkgDir, '..', '..');
const protoRoot = join(repoRoot, 'protos');
// PLUTOS_GEN_OUT redirects the output (the freshness test generates into a temporary folder).
const outDir = process.env.PLUTOS_GEN_OUT ? resolve(process.env.PLUTOS_GEN_OUT) : join(pkgDir, 'src', 'gen');
const plugin = join(pkgDir, 'node_modules', '.bin', 'protoc-gen-ts_proto');

function pickPython() {
  if (process.env.PYTHON) return process.env.PYTHON;
  const venv = join(repoRoot, '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

const python = pickPython();
const pyOut = (code) => execFileSync(python, ['-c', code], { encoding: 'utf8' }).trim();
const googleapisInclude = pyOut(
  'import google.api, os; print(os.path.dirname(os.path.dirname(list(google.api.__path__)[0])))',
);
const wellKnownInclude = pyOut(
  "import grpc_tools, os; print(os.path.join(list(grpc_tools.__path__)[0], '_proto'))",
);

function protoFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? protoFiles(join(dir, e.name)) : e.name.endsWith('.proto') ? [join(dir, e.name)] : [],
  );
}

// Sorted, '/'-separated paths relative to protos/ so the output is the same on every machine.
const files = protoFiles(join(protoRoot, 'plutos'))
  .map((p) => relative(protoRoot, p).split('\\').join('/'))
  .sort();
const options = [
  'onlyTypes=true', // plain interfaces, no runtime dependency
  'outputServices=false',
  'emitImportedFiles=false',
  'useDate=string', // google.protobuf.Timestamp is an RFC 3339 string in JSON
  'forceLong=number', // the REST bridge renders 64-bit integers as JSON numbers
  'useOptionals=messages',
  'importSuffix=.js',
  'esModuleInterop=true',
].join(',');

rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
execFileSync(
  python,
  [
    '-m', 'grpc_tools.protoc',
    `-I${protoRoot}`,
    `-I${googleapisInclude}`,
    `-I${wellKnownInclude}`,
    `--plugin=protoc-gen-ts_proto=${plugin}`,
    `--ts_proto_out=${outDir}`,
    `--ts_proto_opt=${options}`,
    ...files,
  ],
  { stdio: 'inherit', cwd: protoRoot },
);

// Message fields marked `(google.api.field_behavior) = REQUIRED` in a response are always sent by the
// server: their properties lose ts-proto's `?` and `| undefined` (ts-proto makes every message field
// optional, since proto3 message fields have presence).
const required = JSON.parse(
  execFileSync(
    python,
    [
      '-c',
      `
import json, os, sys, tempfile
from grpc_tools import protoc
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
files, includes = json.loads(sys.argv[1]), sys.argv[2:]
with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "set.binpb")
    args = ["protoc", *[f"-I{i}" for i in includes], f"--descriptor_set_out={out}", *files]
    if protoc.main(args) != 0:
        sys.exit(1)
    fds = descriptor_pb2.FileDescriptorSet.FromString(open(out, "rb").read())
found = {}
for f in fds.file:
    for m in f.message_type:
        for field in m.field:
            behaviors = field.options.Extensions[field_behavior_pb2.field_behavior]
            if field.type == field.TYPE_MESSAGE and field.label != field.LABEL_REPEATED and field_behavior_pb2.REQUIRED in behaviors:
                found.setdefault(m.name, []).append(field.json_name)
print(json.dumps(found, sort_keys=True))
`,
      JSON.stringify(files),
      protoRoot,
      googleapisInclude,
      wellKnownInclude,
    ],
    { encoding: 'utf8', cwd: protoRoot },
  ),
);

function tsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

let tightened = 0;
for (const path of tsFiles(outDir)) {
  let text = readFileSync(path, 'utf8');
  for (const [message, fields] of Object.entries(required)) {
    const start = text.indexOf(`export interface ${message} {`);
    if (start < 0) continue;
    const end = text.indexOf('\n}\n', start);
    let body = text.slice(start, end);
    for (const field of fields) {
      const optional = new RegExp(`\\n  ${field}\\?:\\s*(?:\\|\\s*)?([\\w.]+)\\s*\\|\\s*undefined;`);
      if (!optional.test(body)) throw new Error(`gen: ${message}.${field} not found as an optional property`);
      body = body.replace(optional, `\n  ${field}: $1;`);
      tightened += 1;
    }
    text = text.slice(0, start) + body + text.slice(end);
  }
  writeFileSync(path, text);
}
console.log(`ts-proto: generated ${files.length} files into ${outDir} (${tightened} always-sent fields required)`);

// The same request as the playground's, in curl, Python, TypeScript and Go (the key as an
// environment variable, never the signed-in key itself).

const py = (v) => JSON.stringify(v); // JSON string literals are valid Python string literals

function pyValue(v) {
  if (Array.isArray(v)) return `[${v.map(pyValue).join(', ')}]`;
  if (typeof v === 'string') return py(v);
  return String(v);
}

export function snippets(baseUrl, body) {
  const opts = body.options || {};
  const curl = [
    `curl -N -X POST ${baseUrl}/stream \\`,
    '  -H "Authorization: Bearer $PLUTOS_API_KEY" \\',
    '  -H "Content-Type: application/json" \\',
    `  -d '${JSON.stringify(body).replace(/'/g, "'\\''")}'`,
  ].join('\n');

  const pyOpts = Object.entries(opts).map(([k, v]) => `        ${py(k)}: ${pyValue(v)},`);
  const python = [
    'import os',
    '',
    'from plutos_ai import PlutosAI',
    '',
    `client = PlutosAI(api_key=os.environ["PLUTOS_API_KEY"], base_url=${py(baseUrl)})`,
    'with client.stream(',
    `    input=${py(body.input)},`,
    `    model=${py(body.model)},`,
    ...(pyOpts.length ? ['    options={', ...pyOpts, '    },'] : []),
    ') as stream:',
    '    for event in stream:',
    '        if event.is_final:',
    '            print("\\n", event.usage, event.id)',
    '        else:',
    '            print(event.output, end="", flush=True)',
  ].join('\n');

  const ts = [
    "import { PlutosAI } from '@plutos-ai/sdk';",
    '',
    `const client = new PlutosAI({ apiKey: process.env.PLUTOS_API_KEY, baseUrl: ${JSON.stringify(baseUrl)} });`,
    'for await (const event of client.stream({',
    `  input: ${JSON.stringify(body.input)},`,
    `  model: ${JSON.stringify(body.model)},`,
    ...(Object.keys(opts).length ? [`  options: ${JSON.stringify(opts)},`] : []),
    '})) {',
    "  if (event.event === 'chunk') process.stdout.write(event.output);",
    "  else console.log('\\n', event.usage, event.id);",
    '}',
  ].join('\n');

  // A zero numeric option is sent through the SDK's functional options (a literal's 0 means "unset").
  const goFields = [];
  const goZero = [];
  for (const [name, field] of [['temperature', 'Temperature'], ['maxTokens', 'MaxTokens'], ['topP', 'TopP']]) {
    if (opts[name] === 0) goZero.push(`plutos.${field}(0)`);
    else if (opts[name] !== undefined) goFields.push(`\t\t\t${field}: ${opts[name]},`);
  }
  if (opts.systemPrompt !== undefined) goFields.push(`\t\t\tSystemPrompt: ${JSON.stringify(opts.systemPrompt)},`);
  if (opts.stop !== undefined) goFields.push(`\t\t\tStop: []string{${opts.stop.map((s) => JSON.stringify(s)).join(', ')}},`);
  const go = [
    'package main',
    '',
    'import (',
    '\t"fmt"',
    '\t"log"',
    '\t"os"',
    '',
    '\tplutos "github.com/plutos-ai/go-sdk"',
    ')',
    '',
    'func main() {',
    `\tclient := plutos.NewClient(os.Getenv("PLUTOS_API_KEY"), "production", plutos.WithBaseURL(${JSON.stringify(baseUrl)}))`,
    '\tstream, err := client.Stream(plutos.StreamRequest{',
    `\t\tInput: ${JSON.stringify(body.input)},`,
    `\t\tModel: ${JSON.stringify(body.model)},`,
    ...(goFields.length || goZero.length
      ? ['\t\tOptions: plutos.ProcessOptions{', ...goFields, goZero.length ? `\t\t}.With(${goZero.join(', ')}),` : '\t\t},']
      : []),
    '\t})',
    '\tif err != nil {',
    '\t\tlog.Fatal(err)',
    '\t}',
    '\tfor ev, err := range stream.Events() {',
    '\t\tif err != nil {',
    '\t\t\tlog.Fatal(err)',
    '\t\t}',
    '\t\tif ev.IsFinal() {',
    '\t\t\tfmt.Println("\\n", ev.Usage.TotalTokens, ev.ID)',
    '\t\t} else {',
    '\t\t\tfmt.Print(ev.Output)',
    '\t\t}',
    '\t}',
    '}',
  ].join('\n');
  return { curl, python, typescript: ts, go };
}

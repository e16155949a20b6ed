// The API reference's JavaScript streaming example, unmodified apart from the URL, key and model
// (taken from the environment so the test can point it at its own server).
const response = await fetch(`${process.env.PLUTOS_BASE_URL}/stream`, {
  method: 'POST',
  headers: {
    'Authorization': `Bearer ${process.env.PLUTOS_API_KEY}`,
    'Content-Type': 'application/json',
    'Accept': 'text/event-stream'
  },
  body: JSON.stringify({
    input: 'Write a short story about a robot.',
    model: process.env.PLUTOS_MODEL
  })
});

const reader = response.body.getReader();
const decoder = new TextDecoder();

while (true) {
  const { done, value } = await reader.read();
  if (done) break;
  
  const chunk = decoder.decode(value);
  const lines = chunk.split('\n');
  
  for (const line of lines) {
    if (line.startsWith('data: ')) {
      const data = JSON.parse(line.slice(6));
      if (data.chunk === 'partial') {
        process.stdout.write(data.output);
      } else if (data.chunk === 'final') {
        console.log('\nComplete!');
      }
    }
  }
}

// A Node app using the official OpenAI SDK, pointed at LLMFlow either by base URL (BASE_URL)
// or through HTTPS_PROXY mode (PROXY_URL; the CA comes from NODE_EXTRA_CA_CERTS).
// Prints {"plain": ..., "streamed": ..., "tool": ...} as JSON for the Python test to check.
import OpenAI from "openai";
import { ProxyAgent } from "undici";

const marker = process.env.MARKER;
const options = { apiKey: "sk-node-canary", maxRetries: 0 };
if (process.env.BASE_URL) options.baseURL = process.env.BASE_URL;
if (process.env.PROXY_URL) options.fetchOptions = { dispatcher: new ProxyAgent(process.env.PROXY_URL) };
const client = new OpenAI(options);

const plain = await client.chat.completions.create(
  { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello from Node" }], temperature: 0.5 },
  { headers: { "X-Trace-Marker": marker, "X-Trace-Feature": "node-test" } },
);
const stream = await client.chat.completions.create(
  { model: "gpt-4o-mini", stream: true, stream_options: { include_usage: true },
    messages: [{ role: "user", content: "Stream from Node" }] },
  { headers: { "X-Trace-Marker": `${marker}-stream` } },
);
let streamed = "";
for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content || "";
console.log(JSON.stringify({ plain: plain.choices[0].message.content, streamed }));

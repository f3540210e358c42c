// A file sent to POST /_upload (filesystem.put) with a single-use token: progress as bytes leave the
// browser, and abort (the server then keeps nothing of it).
import { client } from "./session.js";
import { RpcError } from "./rpc.js";

export async function upload(file, path, onProgress) {
  const token = await client.call("auth.generate_token", [300, {}, true, true]);
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.upload.onprogress = (e) => onProgress(e.lengthComputable ? e.loaded / e.total : null, e.loaded);
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON: use the status */ }
      if (xhr.status === 200) resolve(body.job_id);
      else reject(new RpcError(body.error || { message: `Upload failed (HTTP ${xhr.status})` }));
    };
    xhr.onerror = () => reject(new RpcError({ message: "The upload was interrupted" }));
    xhr.onabort = () => reject(new RpcError({ message: "Upload aborted" }));
  });
  const form = new FormData();
  form.append("data", JSON.stringify({ method: "filesystem.put", params: [path, {}] }));
  form.append("file", file);
  xhr.open("POST", `/_upload?auth_token=${encodeURIComponent(token)}`);
  xhr.send(form);
  return { done, abort: () => xhr.abort() };
}

//! `--query-template`: a Jinja template (minijinja) rendered per prompt into the
//! request body. The template sees `prompt` (the prompt text; for chat prompts the
//! last user message's text), `messages` (the chat messages; use
//! `{{ messages | tojson }}`) and `model`. evalscope's documented `%p` / `%m`
//! placeholders are substituted too (evalscope never does: its `replace_values` is
//! dead code), JSON-escaped so they can sit inside a string. As in evalscope, a
//! `messages` key in the rendered body is replaced by the dataset's messages for chat
//! prompts. The result must be a JSON object; CLI parameters then fill only the keys
//! it lacks, as for `line_by_line` body lines.

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};

use super::prompt::Prompt;

/// Checks that the template parses, so a typo stops the command before any load.
pub fn check(template: &str) -> Result<()> {
    let mut env = minijinja::Environment::new();
    env.add_template("query", template)
        .map_err(|e| anyhow!("--query-template: not a valid Jinja template: {e}"))?;
    Ok(())
}

fn json_escaped(s: &str) -> String {
    let quoted = Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// Renders the template for every prompt; each becomes a whole request body.
pub fn apply(template: &str, model: &str, prompts: Vec<Prompt>) -> Result<Vec<Prompt>> {
    let mut env = minijinja::Environment::new();
    env.add_template("query", template)
        .map_err(|e| anyhow!("--query-template: not a valid Jinja template: {e}"))?;
    let tmpl = env
        .get_template("query")
        .map_err(|e| anyhow!("--query-template: {e}"))?;
    let mut out = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.into_iter().enumerate() {
        let (text, messages) = match &p {
            Prompt::Text(t) => (t.clone(), None),
            Prompt::Messages(m) => (last_user_text(m), Some(m.clone())),
            // A dataset line that is already a whole body is sent as it is.
            Prompt::Body(_) => {
                out.push(p);
                continue;
            }
        };
        let ctx = minijinja::context! {
            prompt => text,
            messages => messages.clone().unwrap_or_else(|| serde_json::json!([{"role": "user", "content": text}])),
            model => model,
        };
        let rendered = tmpl
            .render(ctx)
            .map_err(|e| anyhow!("--query-template: rendering prompt {}: {e}", i + 1))?
            .replace("%p", &json_escaped(&text))
            .replace("%m", &json_escaped(model));
        let mut body: Map<String, Value> = match serde_json::from_str(&rendered) {
            Ok(Value::Object(o)) => o,
            Ok(_) => bail!("--query-template: renders to JSON that is not an object"),
            Err(e) => bail!(
                "--query-template: does not render to JSON ({e}); rendered for prompt {}: {}",
                i + 1,
                rendered.chars().take(200).collect::<String>()
            ),
        };
        if let (Some(m), true) = (messages, body.contains_key("messages")) {
            body.insert("messages".into(), m);
        }
        out.push(Prompt::Body(body));
    }
    Ok(out)
}

fn last_user_text(messages: &Value) -> String {
    messages
        .as_array()
        .and_then(|a| a.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| match &m["content"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => Some(
                parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jinja_variables_placeholders_and_messages() {
        let t = r#"{"model": "{{ model }}", "prompt": {{ prompt | tojson }}, "temperature": 0.7, "tag": "%m:%p"}"#;
        let out = apply(t, "m-1", vec![Prompt::Text("say \"hi\"".into())]).unwrap();
        let Prompt::Body(b) = &out[0] else { panic!() };
        assert_eq!(b["prompt"], "say \"hi\"");
        assert_eq!(b["model"], "m-1");
        assert_eq!(b["tag"], "m-1:say \"hi\"");
        assert_eq!(b["temperature"], 0.7);
        // evalscope: a template's `messages` is replaced by the dataset's messages.
        let msgs = json!([{"role": "system", "content": "s"}, {"role": "user", "content": "q?"}]);
        let t = r#"{"messages": [], "extra": {{ prompt | tojson }}}"#;
        let out = apply(t, "m", vec![Prompt::Messages(msgs.clone())]).unwrap();
        let Prompt::Body(b) = &out[0] else { panic!() };
        assert_eq!(b["messages"], msgs);
        assert_eq!(b["extra"], "q?");
    }

    #[test]
    fn errors_name_the_flag() {
        let e = check("{{ unclosed").unwrap_err().to_string();
        assert!(e.contains("--query-template"), "{e}");
        let e = apply("not json {{ prompt }}", "m", vec![Prompt::Text("x".into())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--query-template") && e.contains("not json x"),
            "{e}"
        );
        let e = apply("[1]", "m", vec![Prompt::Text("x".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an object"), "{e}");
    }
}

//! The decision APIs of evalscope 1.14.1: System One (`--api systemone`, POST
//! `…/systemone`) and AutoTrust (`--api autotrust`, POST `…/decide`). A request is a
//! complete JSON body from the dataset (`line_by_line` JSON-object lines or
//! `open_decisions`), sent without generation controls; the reply is one JSON
//! decision (a probability per option), counted a success only when it answers the
//! question that was asked, as evalscope validates it
//! (`evalscope/models/utils/decision.py`, `evalscope/api/model/decision.py`).
//! A reply that does not is an `invalid_response` failure with the reason.

use serde_json::{Map, Value};

use super::chunk::{ChunkInfo, Usage};
use crate::dataset::Prompt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionApi {
    SystemOne,
    AutoTrust,
}

impl DecisionApi {
    pub fn name(self) -> &'static str {
        match self {
            DecisionApi::SystemOne => "systemone",
            DecisionApi::AutoTrust => "autotrust",
        }
    }
    /// The endpoint evalscope appends to a URL without one.
    pub fn endpoint(self) -> &'static str {
        match self {
            DecisionApi::SystemOne => "systemone",
            DecisionApi::AutoTrust => "decide",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Choice,
    Noul,
    Score,
}

impl Kind {
    fn parse(v: &Value) -> Result<Kind, String> {
        match v.as_str() {
            Some("choice") => Ok(Kind::Choice),
            Some("noul") => Ok(Kind::Noul),
            Some("score") => Ok(Kind::Score),
            _ => Err(format!(
                "decision kind must be choice, noul or score, got {v}"
            )),
        }
    }
}

/// One question as the validator needs it (evalscope's `DecisionInput`).
#[derive(Debug, PartialEq)]
pub struct Question {
    kind: Kind,
    /// Choice: the option names and texts, in order. Score: the level texts.
    criteria: Vec<(String, String)>,
}

impl Question {
    /// The probability labels in request order.
    fn labels(&self) -> Vec<String> {
        match self.kind {
            Kind::Choice => self.criteria.iter().map(|(k, _)| k.clone()).collect(),
            Kind::Noul => vec!["no".into(), "yes".into()],
            Kind::Score => (0..self.criteria.len()).map(|i| i.to_string()).collect(),
        }
    }
}

/// Generation controls a decision body may not carry (evalscope refuses them).
const FORBIDDEN: [&str; 6] = ["max_tokens", "n", "stream", "temperature", "top_k", "top_p"];

/// The body sent for one dataset item: the item itself, `model` added for System
/// One when missing, after the checks evalscope makes before sending.
pub fn build_body(
    api: DecisionApi,
    prompt: &Prompt,
    model: &str,
) -> anyhow::Result<Map<String, Value>> {
    let Prompt::Body(b) = prompt else {
        anyhow::bail!(
            "--api {}: decisions are complete JSON objects: use --dataset open_decisions or \
             line_by_line with one JSON object per line",
            api.name()
        );
    };
    let mut body = b.clone();
    if api == DecisionApi::SystemOne && !body.contains_key("model") {
        body.insert("model".into(), Value::String(model.into()));
    }
    check_body(api, &body).map_err(|e| anyhow::anyhow!("--api {}: {e}", api.name()))?;
    Ok(body)
}

/// evalscope's request checks: no generation controls, then the question parses.
pub fn check_body(api: DecisionApi, body: &Map<String, Value>) -> Result<Question, String> {
    let forbidden: Vec<&str> = FORBIDDEN
        .iter()
        .copied()
        .filter(|k| body.contains_key(*k))
        .collect();
    if !forbidden.is_empty() {
        return Err(format!(
            "decisions do not accept generation controls: {forbidden:?}"
        ));
    }
    let field = |m: &Map<String, Value>, k: &str| m.get(k).cloned().ok_or(format!("missing `{k}`"));
    // `state` is any JSON value, but it must be there.
    field(body, "state")?;
    let (kind, instructions, criteria) = match api {
        DecisionApi::SystemOne => {
            let qs = body.get("questions").and_then(Value::as_object);
            let Some(q) = qs
                .filter(|q| q.len() == 1)
                .and_then(|q| q.get("answer"))
                .and_then(Value::as_object)
            else {
                return Err(
                    "decision perf requires one question named `answer` in `questions`".into(),
                );
            };
            let criteria = q.get("criteria").cloned().unwrap_or(Value::Null);
            (field(q, "type")?, field(q, "instructions")?, criteria)
        }
        DecisionApi::AutoTrust => {
            if body
                .get("thinking")
                .is_some_and(|t| t.as_str() != Some("off"))
            {
                return Err("decision perf requires thinking=off".into());
            }
            let kind = field(body, "kind")?;
            let criteria = match kind.as_str() {
                Some("choice") => match body.get("options").and_then(Value::as_array) {
                    Some(o) => Value::Object(
                        o.iter()
                            .enumerate()
                            .map(|(i, v)| (i.to_string(), v.clone()))
                            .collect(),
                    ),
                    None => return Err("a choice needs an `options` list".into()),
                },
                Some("score") => {
                    Value::Array((0..6).map(|i| Value::String(i.to_string())).collect())
                }
                _ => Value::Null,
            };
            (kind, field(body, "question")?, criteria)
        }
    };
    let kind = Kind::parse(&kind)?;
    if instructions.as_str().is_none_or(str::is_empty) {
        return Err("`instructions` must be a non-empty string".into());
    }
    let strings = |what: &str| format!("{what} must be strings");
    let criteria: Vec<(String, String)> = match (kind, criteria) {
        (Kind::Choice, Value::Object(m)) if (2..=255).contains(&m.len()) => m
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) if !k.trim().is_empty() && !s.trim().is_empty() => Ok((k, s)),
                Value::String(_) => Err("choice options must not be empty".to_string()),
                _ => Err(strings("choice options")),
            })
            .collect::<Result<_, _>>()?,
        (Kind::Choice, _) => return Err("choice requires 2-255 named options".into()),
        (Kind::Score, Value::Array(a)) if (2..=10).contains(&a.len()) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) if !s.trim().is_empty() => Ok((i.to_string(), s)),
                Value::String(_) => Err("score level descriptions must not be empty".to_string()),
                _ => Err(strings("score levels")),
            })
            .collect::<Result<_, _>>()?,
        (Kind::Score, _) => return Err("score requires 2-10 ordered levels".into()),
        (Kind::Noul, Value::Null) => Vec::new(),
        (Kind::Noul, Value::Object(m)) if m.keys().all(|k| k == "true" || k == "false") => m
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                _ => Err(strings("noul criteria")),
            })
            .collect::<Result<_, _>>()?,
        (Kind::Noul, _) => return Err("noul criteria may describe true and false only".into()),
    };
    Ok(Question { kind, criteria })
}

/// A whole decision reply, checked against the request body that asked it.
pub fn parse(api: DecisionApi, data: &[u8], request: &[u8]) -> Result<ChunkInfo, (bool, String)> {
    let raw: Value =
        serde_json::from_slice(data).map_err(|e| (false, format!("invalid JSON: {e}")))?;
    if let Some(e) = raw.get("error").filter(|e| !e.is_null()) {
        return Ok(ChunkInfo {
            error: Some(e.to_string()),
            ..ChunkInfo::default()
        });
    }
    let invalid = |e: String| (true, format!("Invalid decision response: {e}"));
    let body: Map<String, Value> =
        serde_json::from_slice(request).map_err(|e| invalid(format!("request: {e}")))?;
    let q = check_body(api, &body).map_err(invalid)?;
    validate(api, &raw, &q).map_err(invalid)?;
    let (prompt, completion) = usage(&raw).map_err(invalid)?;
    Ok(ChunkInfo {
        has_choices: true,
        finish_reason: Some("stop".into()),
        usage: Some(Usage {
            prompt_tokens: Some(prompt),
            completion_tokens: Some(completion),
            cached_tokens: None,
        }),
        ..ChunkInfo::default()
    })
}

/// `usage` in either naming (`input_tokens`/`output_tokens` or OpenAI's); absent
/// counts are 0, malformed ones an error.
fn usage(raw: &Value) -> Result<(u64, u64), String> {
    let usage = match raw.get("usage") {
        None | Some(Value::Null) => return Ok((0, 0)),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("decision usage must be a JSON object".into()),
    };
    let count = |a: &str, b: &str| match usage.get(a).or_else(|| usage.get(b)) {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| "decision token counts must be nonnegative integers".to_string()),
    };
    Ok((
        count("input_tokens", "prompt_tokens")?,
        count("output_tokens", "completion_tokens")?,
    ))
}

const ANSWER_TOLERANCE: f64 = 1e-6;
const PROBABILITY_TOLERANCE: f64 = 0.02;

/// A probability: a JSON number (not a bool) in [0, 1].
fn probability(v: &Value, what: &str) -> Result<f64, String> {
    v.as_f64()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| format!("{what} must be a probability in [0, 1], got {v}"))
}

/// The canonical answer: the type, probabilities by label (request order for
/// AutoTrust, the reply's for System One), and the kind's own fields.
struct Answer {
    kind: Kind,
    probabilities: Vec<(String, f64)>,
    choice: Option<String>,
    noul: Option<f64>,
    score: Option<f64>,
    legend: Option<Vec<(String, String)>>,
}

fn validate(api: DecisionApi, raw: &Value, q: &Question) -> Result<(), String> {
    if raw
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("decision response must include the resolved model name".into());
    }
    let answer = match api {
        DecisionApi::SystemOne => system_one_answer(raw, q)?,
        DecisionApi::AutoTrust => autotrust_answer(raw, q)?,
    };
    answer.check()?;
    let labels = q.labels();
    let mut got: Vec<&str> = answer
        .probabilities
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    let mut want: Vec<&str> = labels.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    if answer.kind != q.kind || got != want {
        return Err("returned decision options do not match the request criteria".into());
    }
    if q.kind == Kind::Score {
        let mut legend = answer.legend.unwrap_or_default();
        let mut asked = q.criteria.clone();
        legend.sort();
        asked.sort();
        if legend != asked {
            return Err(
                "returned Score legend does not match the requested level descriptions".into(),
            );
        }
    }
    Ok(())
}

fn system_one_answer(raw: &Value, q: &Question) -> Result<Answer, String> {
    let Some(a) = raw
        .get("answers")
        .and_then(Value::as_object)
        .filter(|m| m.len() == 1 && m.contains_key("answer"))
    else {
        return Err("System One must return exactly the requested answer question".into());
    };
    let Some(a) = a["answer"].as_object() else {
        return Err("System One answer must be a JSON object".into());
    };
    const FIELDS: [&str; 7] = [
        "type",
        "probabilities",
        "choice",
        "noul",
        "score",
        "legend",
        "confidence",
    ];
    if let Some(k) = a.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("unexpected answer field `{k}`"));
    }
    let opt = |k: &str| a.get(k).filter(|v| !v.is_null());
    let noul = opt("noul").map(|v| probability(v, "noul")).transpose()?;
    let probabilities = match (opt("probabilities"), q.kind, noul) {
        (Some(Value::Object(m)), _, _) => m
            .iter()
            .map(|(k, v)| Ok((k.clone(), probability(v, "a probability")?)))
            .collect::<Result<Vec<_>, String>>()?,
        (Some(_), _, _) => return Err("probabilities must be an object".into()),
        // evalscope: a noul reply may give only the probability of yes.
        (None, Kind::Noul, Some(p)) => vec![("no".into(), 1.0 - p), ("yes".into(), p)],
        (None, _, _) => return Err("missing probabilities".into()),
    };
    if let Some(c) = opt("confidence") {
        probability(c, "confidence")?;
    }
    let legend = match opt("legend") {
        None => None,
        Some(Value::Object(m)) => Some(
            m.iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|s| (k.clone(), s.to_string()))
                        .ok_or("legend values must be strings")
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("legend must be an object".into()),
    };
    let score = match opt("score") {
        None => None,
        Some(v) => Some(v.as_f64().ok_or("score must be a number")?),
    };
    Ok(Answer {
        kind: Kind::parse(a.get("type").unwrap_or(&Value::Null))?,
        probabilities,
        choice: opt("choice")
            .map(|c| {
                c.as_str()
                    .map(str::to_string)
                    .ok_or("choice must be a string")
            })
            .transpose()?,
        noul,
        score,
        legend,
    })
}

fn autotrust_answer(raw: &Value, q: &Question) -> Result<Answer, String> {
    let kind = Kind::parse(raw.get("kind").unwrap_or(&Value::Null))?;
    let strings = |v: Option<&Value>| -> Option<Vec<String>> {
        v?.as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let options = strings(raw.get("options")).ok_or("options must be a list of strings")?;
    let probabilities: Vec<f64> = raw
        .get("probabilities")
        .and_then(Value::as_array)
        .filter(|p| (2..=255).contains(&p.len()))
        .ok_or("probabilities must be a list of 2-255 probabilities")?
        .iter()
        .map(|p| probability(p, "a probability"))
        .collect::<Result<_, _>>()?;
    let index = raw
        .get("choice_index")
        .and_then(Value::as_u64)
        .ok_or("choice_index must be a nonnegative integer")? as usize;
    let choice = raw
        .get("choice")
        .and_then(Value::as_str)
        .ok_or("choice must be a string")?;
    let effective = raw.get("effective_kind").map_or(Ok(kind), Kind::parse)?;
    if kind != q.kind || effective != q.kind {
        return Err("AutoTrust returned a different decision kind".into());
    }
    let asked: Vec<String> = match q.kind {
        Kind::Choice => q.criteria.iter().map(|(_, v)| v.clone()).collect(),
        Kind::Noul => vec!["false".into(), "true".into()],
        Kind::Score => (0..6).map(|i| i.to_string()).collect(),
    };
    let labels = q.labels();
    if options != asked || probabilities.len() != labels.len() {
        return Err("AutoTrust options do not match the request".into());
    }
    if index >= options.len() {
        return Err("AutoTrust returned an invalid choice index".into());
    }
    if choice != options[index] {
        return Err("AutoTrust choice and index disagree".into());
    }
    let max = probabilities.iter().copied().fold(f64::MIN, f64::max);
    if probabilities[index] < max - ANSWER_TOLERANCE {
        return Err("AutoTrust choice index must identify a highest-probability option".into());
    }
    let by_label: Vec<(String, f64)> = labels
        .iter()
        .cloned()
        .zip(probabilities.iter().copied())
        .collect();
    Ok(Answer {
        kind,
        choice: (kind == Kind::Choice).then(|| labels[index].clone()),
        noul: (kind == Kind::Noul).then(|| probabilities[1]),
        score: (kind == Kind::Score).then(|| {
            probabilities
                .iter()
                .enumerate()
                .map(|(i, p)| i as f64 * p)
                .sum()
        }),
        legend: (kind == Kind::Score).then(|| q.criteria.clone()),
        probabilities: by_label,
    })
}

/// evalscope's sum tolerance: 0.02, wider when every value has two decimals and a
/// unit mass could have been rounded to them.
fn sum_tolerance(values: &[f64]) -> f64 {
    if !values.iter().all(|v| ((v * 100.0).round() / 100.0) == *v) {
        return PROBABILITY_TOLERANCE;
    }
    let half = 0.005;
    let lower: f64 = values.iter().map(|v| (v - half).max(0.0)).sum();
    let upper: f64 = values.iter().map(|v| (v + half).min(1.0)).sum();
    if lower <= 1.0 + 1e-12 && upper >= 1.0 - 1e-12 {
        PROBABILITY_TOLERANCE.max(values.len() as f64 * half)
    } else {
        PROBABILITY_TOLERANCE
    }
}

impl Answer {
    /// evalscope's `DecisionAnswer` checks.
    fn check(&self) -> Result<(), String> {
        let n = self.probabilities.len();
        if !(2..=255).contains(&n) {
            return Err("a decision has 2-255 probabilities".into());
        }
        let p = |k: &str| {
            self.probabilities
                .iter()
                .find(|(l, _)| l == k)
                .map(|(_, v)| *v)
        };
        let values: Vec<f64> = self.probabilities.iter().map(|(_, v)| *v).collect();
        let sum: f64 = values.iter().sum();
        let tol = sum_tolerance(&values);
        if (sum - 1.0).abs() > tol + 1e-12 || sum <= 0.0 {
            return Err(
                "decision probabilities do not sum to 1 within their rounding tolerance".into(),
            );
        }
        let max = values.iter().copied().fold(f64::MIN, f64::max);
        match self.kind {
            Kind::Choice => match self.choice.as_deref().and_then(p) {
                None => return Err("the selected choice is missing from probabilities".into()),
                Some(c) if c < max - ANSWER_TOLERANCE => {
                    return Err("the selected choice must have the highest probability".into())
                }
                _ => {}
            },
            Kind::Noul => {
                let (Some(yes), Some(_), Some(noul)) = (p("yes"), p("no"), self.noul) else {
                    return Err("noul must provide a probability of yes".into());
                };
                if n != 2 {
                    return Err("noul must provide a probability of yes".into());
                }
                if (noul - yes).abs() > ANSWER_TOLERANCE {
                    return Err("noul and yes probability disagree".into());
                }
            }
            Kind::Score => {
                let keys: Vec<String> = (0..n).map(|i| i.to_string()).collect();
                if !keys.iter().all(|k| p(k).is_some()) {
                    return Err(
                        "score probability keys must be consecutive zero-based levels".into(),
                    );
                }
                let legend_ok = self.legend.as_ref().is_some_and(|l| {
                    l.len() == n && keys.iter().all(|k| l.iter().any(|(lk, _)| lk == k))
                });
                if !legend_ok {
                    return Err("score legend must match the probability levels".into());
                }
                let expected: f64 = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| i as f64 * p(k).unwrap_or(0.0))
                    .sum();
                let Some(score) = self.score.filter(|s| (0.0..=(n - 1) as f64).contains(s)) else {
                    return Err("score must be inside the declared scale".into());
                };
                if (score - expected).abs() > tol * (n - 1) as f64 + ANSWER_TOLERANCE {
                    return Err("score does not match the expected level".into());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(api: DecisionApi, request: Value, reply: Value) -> Result<ChunkInfo, (bool, String)> {
        parse(
            api,
            reply.to_string().as_bytes(),
            request.to_string().as_bytes(),
        )
    }

    #[test]
    fn system_one_kinds() {
        let noul =
            json!({"state": "s", "questions": {"answer": {"type": "noul", "instructions": "?"}}});
        let ans = |a: Value| json!({"model": "m", "answers": {"answer": a}, "usage": {"prompt_tokens": 7}});
        // A noul answer may give only the probability of yes.
        let ok = check(
            DecisionApi::SystemOne,
            noul.clone(),
            ans(json!({"type": "noul", "noul": 0.8})),
        )
        .unwrap();
        assert_eq!(ok.usage.and_then(|u| u.prompt_tokens), Some(7));
        let e = check(
            DecisionApi::SystemOne,
            noul,
            ans(json!({"type": "noul", "probabilities": {"no": 0.2, "yes": 0.8}, "noul": 0.7})),
        )
        .unwrap_err();
        assert!(e.0 && e.1.contains("disagree"), "{e:?}");
        let score = json!({"state": "s", "questions": {"answer": {"type": "score", "instructions": "?",
                           "criteria": ["low", "mid", "high"]}}});
        let good = json!({"type": "score", "probabilities": {"0": 0.2, "1": 0.3, "2": 0.5},
                          "score": 1.3, "legend": {"0": "low", "1": "mid", "2": "high"}});
        assert!(check(DecisionApi::SystemOne, score.clone(), ans(good.clone())).is_ok());
        let mut bad = good.clone();
        bad["legend"]["2"] = json!("top");
        let e = check(DecisionApi::SystemOne, score.clone(), ans(bad)).unwrap_err();
        assert!(e.1.contains("legend"), "{e:?}");
        let mut bad = good;
        bad["score"] = json!(1.9);
        let e = check(DecisionApi::SystemOne, score, ans(bad)).unwrap_err();
        assert!(e.1.contains("expected level"), "{e:?}");
    }

    #[test]
    fn autotrust_maps_arrays_onto_the_request() {
        let req = json!({"kind": "choice", "state": "s", "question": "?", "options": ["x", "y"]});
        let reply = |i: u64, c: &str| {
            json!({"model": "m", "kind": "choice", "options": ["x", "y"], "probabilities": [0.25, 0.75],
                   "choice_index": i, "choice": c})
        };
        assert!(check(DecisionApi::AutoTrust, req.clone(), reply(1, "y")).is_ok());
        let e = check(DecisionApi::AutoTrust, req.clone(), reply(1, "x")).unwrap_err();
        assert!(e.1.contains("disagree"), "{e:?}");
        let e = check(DecisionApi::AutoTrust, req.clone(), reply(0, "x")).unwrap_err();
        assert!(e.1.contains("highest-probability"), "{e:?}");
        let thinking = json!({"kind": "noul", "state": "s", "question": "?", "thinking": "on"});
        let e = check_body(DecisionApi::AutoTrust, thinking.as_object().unwrap()).unwrap_err();
        assert!(e.contains("thinking=off"), "{e}");
    }

    #[test]
    fn two_decimal_rounding_widens_the_sum_tolerance() {
        // Three values rounded to two decimals may sum to 1 ± 0.015.
        assert_eq!(sum_tolerance(&[0.33, 0.33, 0.33]), 0.02);
        assert_eq!(sum_tolerance(&[0.2; 5]), 0.025);
        assert_eq!(sum_tolerance(&[0.333, 0.333, 0.333]), 0.02);
    }
}

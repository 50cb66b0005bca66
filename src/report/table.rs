//! Plain-text tables with box-drawing borders (the look of tabulate's
//! `simple_outline` and rich's tables that evalscope prints).

/// A row of cells, or a section title spanning the table.
pub enum Line {
    Cells(Vec<String>),
    Section(String),
}

fn width(s: &str) -> usize {
    s.chars().count()
}

pub fn render(title: Option<&str>, headers: &[&str], lines: &[Line]) -> String {
    let ncol = headers.len();
    let mut w: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for l in lines {
        if let Line::Cells(c) = l {
            for (i, cell) in c.iter().enumerate().take(ncol) {
                w[i] = w[i].max(width(cell));
            }
        }
    }
    let inner: usize = w.iter().map(|x| x + 2).sum::<usize>() + ncol.saturating_sub(1);
    for l in lines {
        if let Line::Section(s) = l {
            let need = width(s) + 2;
            if need > inner {
                let last = ncol - 1;
                w[last] += need - inner;
            }
        }
    }
    let inner: usize = w.iter().map(|x| x + 2).sum::<usize>() + ncol.saturating_sub(1);
    let rule = |l: char, m: char, r: char| {
        let mut s = String::new();
        s.push(l);
        for (i, x) in w.iter().enumerate() {
            s.push_str(&"─".repeat(x + 2));
            s.push(if i + 1 == ncol { r } else { m });
        }
        s
    };
    let row = |cells: &[String]| {
        let mut s = String::from("│");
        for (i, x) in w.iter().enumerate() {
            let c = cells.get(i).map(String::as_str).unwrap_or("");
            s.push(' ');
            s.push_str(c);
            s.push_str(&" ".repeat(x - width(c) + 1));
            s.push('│');
        }
        s
    };
    let mut out = Vec::new();
    if let Some(t) = title {
        let pad = inner.saturating_sub(width(t)) / 2;
        out.push(format!("{}{t}", " ".repeat(pad + 1)));
    }
    out.push(rule('┌', '┬', '┐'));
    out.push(row(&headers
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()));
    out.push(rule('├', '┼', '┤'));
    for l in lines {
        match l {
            Line::Cells(c) => out.push(row(c)),
            Line::Section(s) => {
                let mut t = format!("│ {s}");
                t.push_str(&" ".repeat(inner - width(s) - 1));
                t.push('│');
                out.push(t);
            }
        }
    }
    out.push(rule('└', '┴', '┘'));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned() {
        let t = render(
            None,
            &["Key", "Value"],
            &[
                Line::Section("── General ──".into()),
                Line::Cells(vec!["a".into(), "1".into()]),
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        let w = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == w), "{t}");
    }
}

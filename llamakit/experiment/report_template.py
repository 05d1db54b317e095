"""The HTML report's template (Jinja, rendered by ``templating.sandbox.render_package_template``,
every value escaped). One file: styles and the disagreement filter are inline, figures are data
URIs, and nothing is fetched from anywhere (no fonts, scripts or images from a network)."""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>llamakit report: {{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; vertical-align: top; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.reply { white-space: pre-wrap; max-width: 40em; }
.reason { white-space: pre-wrap; color: #555; font-size: 90%; text-align: left; }
.item { border-top: 2px solid #888; margin-top: 1em; }
.item.agree .badge { display: none; }
.badge { background: #c60; color: #fff; border-radius: 3px; padding: 0 .4em; font-size: 85%; }
.meta { color: #555; font-size: 90%; }
.err { color: #a00; }
body.only-disagree .item.agree { display: none; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">Written by llamakit {{ version }} at {{ written_at }}. Self-contained: open it anywhere, no network needed.</p>

<h2>Runs and credit spend</h2>
<table id="runs">
<tr><th>run</th><th>name</th><th>model</th><th>answered by</th><th>status</th><th>cells</th><th>errors</th><th>credits spent (USD)</th><th>of which judges</th><th>spend measured by</th></tr>
{% for r in runs %}
<tr><td>{{ r.id }}</td><td>{{ r.name }}</td><td>{{ r.model }}</td><td>{{ r.source }}</td><td>{{ r.status }}</td>
<td class="num">{{ r.done }}/{{ r.total }}</td><td class="num">{{ r.errors }}</td>
<td class="num">{{ r.credits }}</td><td class="num">{{ r.judge_credits }}</td><td>{{ r.spend_source }}</td></tr>
{% endfor %}
</table>

<h2>Summary (95% CIs, bootstrap over items)</h2>
{% for r in runs %}
<h3>{{ r.name }} <span class="meta">{{ r.id }}</span></h3>
<table class="summary">
<tr>{% for c in r.summary_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in r.summary_rows %}<tr>{% for v in row %}<td{% if not loop.first %} class="num"{% endif %}>{{ v }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% if r.comparisons %}
<table class="comparisons">
<tr><th>paired comparison (by item)</th><th>difference</th><th>95% CI</th><th>p</th><th>items</th><th>wins / losses / ties</th></tr>
{% for c in r.comparisons %}<tr><td>{{ c.name }}</td><td class="num">{{ c.diff }}</td><td class="num">{{ c.ci }}</td><td class="num">{{ c.p }}</td><td class="num">{{ c.n }}</td><td class="num">{{ c.wlt }}</td></tr>
{% endfor %}
</table>
{% endif %}
{% endfor %}

<h2>Plots</h2>
{% for f in figures %}
<figure><img alt="{{ f.alt }}" src="{{ f.uri }}"><figcaption>{{ f.alt }}</figcaption></figure>
{% endfor %}

<h2>Every cell, per item</h2>
<p><label><input type="checkbox" id="only-disagree"> show only items where the conditions disagree on a score</label>
<span class="meta" id="shown">{{ items|length }} items, {{ disagree_count }} with disagreements</span></p>
{% for item in items %}
<section class="item {{ 'disagree' if item.disagree else 'agree' }}" data-item="{{ item.id }}">
<h3>item {{ item.id }} <span class="badge">disagree: {{ item.disagree|join(', ') }}</span></h3>
{% if item.expected is not none %}<p class="meta">expected: {{ item.expected }}</p>{% endif %}
<table>
<tr><th>condition</th><th>reply</th>{% for s in scorers %}<th>{{ s }}</th>{% endfor %}<th>credits</th><th>latency (s)</th></tr>
{% for c in item.cells %}
<tr><td>{{ c.condition }}</td>
<td><div class="reply">{{ c.reply }}</div>{% if c.error %}<div class="err">{{ c.error }}</div>{% endif %}
<details><summary>prompt</summary><div class="reason">{{ c.prompt }}</div></details></td>
{% for s in c.scores %}<td class="num">{{ s.value }}{% if s.reason %}<div class="reason">{{ s.reason }}</div>{% endif %}</td>{% endfor %}
<td class="num">{{ c.credits }}</td><td class="num">{{ c.latency }}</td></tr>
{% endfor %}
</table>
</section>
{% endfor %}
<script>
(function () {
  var box = document.getElementById("only-disagree");
  var shown = document.getElementById("shown");
  var all = document.querySelectorAll("section.item").length;
  var differ = document.querySelectorAll("section.item.disagree").length;
  box.addEventListener("change", function () {
    document.body.classList.toggle("only-disagree", box.checked);
    shown.textContent = (box.checked ? differ : all) + " items shown, " + differ + " with disagreements";
  });
})();
</script>
</body>
</html>
"""

// The explorer's page: asks the server (/api/...) for explanations and shows them. Every number shown
// comes from the server; this script only colours, arranges and offers downloads.
(function () {
  'use strict';
  var config = null;
  var last = {text: null, image: null, answer: null};

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function option(select, value, text) { select.appendChild(el('option', {value: value}, text)); }

  // -- requests ------------------------------------------------------------------------------------
  function request(url, options, errorBox) {
    $(errorBox).textContent = '';
    return fetch(url, options).then(function (response) {
      var type = response.headers.get('content-type') || '';
      var body = type.indexOf('json') >= 0 ? response.json() : response.text();
      return body.then(function (data) {
        if (!response.ok) throw new Error((data && data.error) || ('the server answered ' + response.status));
        return data;
      });
    }).catch(function (error) {
      $(errorBox).textContent = error.message;
      throw error;
    });
  }
  function busy(button, promise) {
    button.disabled = true;
    var done = function () { button.disabled = false; };
    promise.then(done, done);
    return promise;
  }

  // -- colours: red for, blue against the target (the audit report's colours) -----------------------
  function colour(value) {
    var v = Math.max(-1, Math.min(1, value));
    return v >= 0 ? 'rgba(220,40,40,' + v.toFixed(3) + ')' : 'rgba(40,80,220,' + (-v).toFixed(3) + ')';
  }
  function peak(scores) {
    var m = 0;
    scores.forEach(function (s) { m = Math.max(m, Math.abs(s)); });
    return m || 1;
  }
  function unit(text, score, scale, special) {
    var span = el('span', {'class': 'unit' + (special ? ' special' : ''), 'data-score': String(score)}, text);
    span.style.background = special ? 'transparent' : colour(score / scale);
    span.title = text + ': ' + score.toPrecision(4);
    return span;
  }
  function hover(container, infoBox) {
    container.addEventListener('mouseover', function (event) {
      if (event.target.classList.contains('unit')) $(infoBox).textContent = event.target.title;
    });
  }

  // -- downloads ------------------------------------------------------------------------------------
  function download(label, name, content, type) {
    var href = content.indexOf('data:') === 0 ? content : URL.createObjectURL(new Blob([content], {type: type}));
    return el('a', {href: href, download: name}, label);
  }
  function downloads(result, stem, png) {
    var box = el('div', {'class': 'downloads'});
    box.appendChild(download('JSON', stem + '.json', JSON.stringify(result.json, null, 2), 'application/json'));
    box.appendChild(download('HTML', stem + '.html', result.html, 'text/html'));
    if (png) box.appendChild(download('PNG', stem + '.png', png, 'image/png'));
    return box;
  }

  // A text map as a picture: the coloured units of ``line`` drawn on a canvas as the page shows them.
  function linePng(line) {
    var canvas = document.createElement('canvas'), context = canvas.getContext('2d');
    var font = '16px sans-serif', pad = 10, height = 24, gap = 6, width = 900;
    context.font = font;
    var x = pad, y = pad, boxes = [];
    line.querySelectorAll('.unit').forEach(function (u) {
      var w = context.measureText(u.textContent).width + 6;
      if (x + w > width - pad && x > pad) { x = pad; y += height + gap; }
      boxes.push({x: x, y: y, w: w, text: u.textContent, fill: u.style.background});
      x += w + 4;
    });
    canvas.width = width;
    canvas.height = y + height + pad;
    context.fillStyle = '#fff';
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.font = font;
    context.textBaseline = 'middle';
    boxes.forEach(function (b) {
      context.fillStyle = b.fill || 'transparent';
      context.fillRect(b.x, b.y, b.w, height);
      context.fillStyle = '#222';
      context.fillText(b.text, b.x + 3, b.y + height / 2);
    });
    return canvas.toDataURL('image/png');
  }

  // -- forms shared by text and image ----------------------------------------------------------------
  function fillModels(select, kind) {
    var models = config.models.filter(function (m) { return m.kind === kind; });
    models.forEach(function (m) { option(select, m.name, m.name); });
    return models;
  }
  function modelInfo(name) {
    return config.models.filter(function (m) { return m.name === name; })[0];
  }
  function fillMethods(fieldset, prefix) {
    var others = config.methods.filter(function (m) { return config.compared.indexOf(m) < 0; });
    config.compared.concat(others).forEach(function (m) {
      var label = el('label');
      var box = el('input', {type: 'checkbox', value: m, id: prefix + '-' + m});
      box.checked = config.compared.indexOf(m) >= 0;
      label.appendChild(box);
      label.appendChild(document.createTextNode(' ' + m));
      fieldset.appendChild(label);
    });
  }
  function chosenMethods(fieldset) {
    return Array.prototype.map.call(fieldset.querySelectorAll('input:checked'), function (b) { return b.value; });
  }
  function fillTargets(model, targetSelect, contrastSelect) {
    targetSelect.innerHTML = '';
    contrastSelect.innerHTML = '';
    option(targetSelect, '', 'predicted class');
    option(contrastSelect, '', '(nothing: the class alone)');
    (model ? model.labels : []).forEach(function (label, i) {
      option(targetSelect, String(i), label);
      option(contrastSelect, String(i), label);
    });
  }
  function target(targetSelect, contrastSelect, predicted) {
    var a = targetSelect.value, b = contrastSelect.value;
    if (b === '') return a;
    return (a === '' ? String(predicted) : a) + ' vs ' + b;
  }
  function showClasses(box, data, targetSelect, rerun) {
    box.innerHTML = '';
    box.appendChild(el('span', {}, 'Explaining ' + data.target + '. Classes (click one to explain it): '));
    data.classes.forEach(function (c) {
      var item = el('span', {'class': 'cls' + (String(c.index) === targetSelect.value ? ' chosen' : ''), 'data-index': String(c.index)});
      var bar = el('span', {'class': 'bar'});
      bar.style.width = (c.probability * 6).toFixed(2) + 'em';
      item.appendChild(el('span', {}, c.label + (c.index === data.predicted ? ' (predicted)' : '')));
      item.appendChild(bar);
      item.appendChild(el('span', {}, (100 * c.probability).toFixed(1) + '%'));
      item.title = c.label + ': probability ' + c.probability.toPrecision(4);
      item.addEventListener('click', function () { targetSelect.value = String(c.index); rerun(); });
      box.appendChild(item);
    });
  }

  // -- 1. text ----------------------------------------------------------------------------------------
  function renderText() {
    var data = last.text;
    var box = $('text-results');
    box.innerHTML = '';
    if (!data) return;
    var words = $('view-words').checked;
    data.results.forEach(function (result) {
      var card = el('div', {'class': 'result', 'data-method': result.method});
      card.appendChild(el('h3', {}, result.method));
      card.appendChild(el('div', {'class': 'title'}, result.title));
      if (result.notice) card.appendChild(el('div', {'class': 'notice'}, result.notice));
      var line = el('div', {'class': 'tokens'});
      if (words) {
        var scale = peak(result.words.map(function (w) { return w.score; }));
        result.words.forEach(function (w) {
          line.appendChild(unit(w.text, w.score, scale, false));
          line.appendChild(document.createTextNode(' '));
        });
      } else {
        var content = result.tokens.filter(function (t) { return !t.special; }).map(function (t) { return t.score; });
        var tokenScale = peak(content);
        // WordPiece marks continuations (##); byte-level BPE and SentencePiece mark word starts (\u0120, \u2581)
        var marksStarts = result.tokens.some(function (t) { return /^[\u0120\u2581]/.test(t.text); });
        result.tokens.forEach(function (t, i) {
          var starts = marksStarts ? /^[\u0120\u2581]/.test(t.text) || t.special : t.text.indexOf('##') !== 0;
          if (i > 0 && starts) line.appendChild(document.createTextNode(' '));
          var shown = marksStarts ? t.text.replace(/^[\u0120\u2581]/, '') : t.text.replace(/^##/, '');
          line.appendChild(unit(shown, t.score, tokenScale, t.special));
        });
      }
      card.appendChild(line);
      var links = downloads(result, 'relevancy-' + result.method);
      var png = el('a', {href: '#', download: 'relevancy-' + result.method + '.png'}, 'PNG');
      png.addEventListener('click', function () { png.href = linePng(line); });  // drawn when asked for
      links.appendChild(png);
      card.appendChild(links);
      box.appendChild(card);
    });
  }
  function explainText() {
    var model = $('text-model').value;
    var body = {model: model, text: $('text-input').value, methods: chosenMethods($('text-methods')),
                target: target($('text-target'), $('text-contrast'), last.text ? last.text.predicted : 'predicted')};
    if (body.target.indexOf('predicted vs') === 0) {
      $('text-error').textContent = 'choose the class to contrast (Target), or explain once to know the predicted one';
      return Promise.resolve();
    }
    return busy($('explain-text'), request('/api/explain/text', {method: 'POST', headers: {'content-type': 'application/json'},
      body: JSON.stringify(body)}, 'text-error')).then(function (data) {
      last.text = data;
      showClasses($('text-classes'), data, $('text-target'), explainText);
      renderText();
    }, function () {});
  }

  // -- 2. image ---------------------------------------------------------------------------------------
  function applyOpacity() {
    document.querySelectorAll('#image-results img.heat').forEach(function (img) { img.style.opacity = $('opacity').value; });
  }
  function explainImage() {
    var file = $('image-file').files[0];
    if (!file) {
      $('image-error').textContent = 'choose a picture to upload first';
      return Promise.resolve();
    }
    var t = target($('image-target'), $('image-contrast'), last.image ? last.image.predicted : 'predicted');
    if (t.indexOf('predicted vs') === 0) {
      $('image-error').textContent = 'choose the class to contrast (Target), or explain once to know the predicted one';
      return Promise.resolve();
    }
    var query = '?model=' + encodeURIComponent($('image-model').value) + '&methods=' +
      encodeURIComponent(chosenMethods($('image-methods')).join(',')) + '&target=' + encodeURIComponent(t);
    return busy($('explain-image'), request('/api/explain/image' + query, {method: 'POST', body: file}, 'image-error'))
      .then(function (data) {
        last.image = data;
        showClasses($('image-classes'), data, $('image-target'), explainImage);
        var box = $('image-results');
        box.innerHTML = '';
        data.results.forEach(function (result) {
          var card = el('div', {'class': 'result', 'data-method': result.method});
          card.appendChild(el('h3', {}, result.method));
          card.appendChild(el('div', {'class': 'title'}, result.title));
          if (result.notice) card.appendChild(el('div', {'class': 'notice'}, result.notice));
          var stack = el('div', {'class': 'stack'});
          stack.appendChild(el('img', {'class': 'base', src: data.image, alt: 'the image as the model sees it'}));
          stack.appendChild(el('img', {'class': 'heat', src: result.heatmap, alt: result.method + ' map'}));
          card.appendChild(stack);
          card.appendChild(downloads(result, 'relevancy-' + result.method, result.overlay));
          box.appendChild(card);
        });
        applyOpacity();
      }, function () {});
  }

  // -- 3. answers of causal language models ----------------------------------------------------------
  function showAnswer(choice) {
    var data = last.answer;
    if (!data) return;
    var key = $('drop-sink').checked ? 'sink_dropped' : 'kept';
    var n = data.prompt_length;
    var shown = choice === 'whole' ? data.tokens.slice(0, n) : data.tokens.slice(0, n + choice);
    var scores = choice === 'whole' ? data.whole[key] : data.rows[key][choice].slice(0, n + choice);
    var scale = peak(scores);
    var map = $('answer-map');
    map.innerHTML = '';
    shown.forEach(function (token, i) {
      var span = unit(token, scores[i], scale, false);
      if (i >= n) span.classList.add('answer');
      map.appendChild(span);
    });
    document.querySelectorAll('#answer-tokens button').forEach(function (b) {
      b.classList.toggle('chosen', b.getAttribute('data-choice') === String(choice));
    });
    last.answerChoice = choice;
  }
  function explainAnswer() {
    var body = {model: $('answer-model').value, prompt: $('prompt').value, new_tokens: parseInt($('new-tokens').value, 10),
                method: $('answer-method').value};
    return busy($('explain-answer'), request('/api/explain/answer', {method: 'POST', headers: {'content-type': 'application/json'},
      body: JSON.stringify(body)}, 'answer-error')).then(function (data) {
      last.answer = data;
      var box = $('answer-tokens');
      box.innerHTML = '';
      var whole = el('button', {'data-choice': 'whole'}, 'whole answer');
      whole.addEventListener('click', function () { showAnswer('whole'); });
      box.appendChild(whole);
      data.tokens.slice(data.prompt_length).forEach(function (token, t) {
        var shown = token.trim() ? token : JSON.stringify(token).slice(1, -1).replace(/ /g, '\u2423');  // whitespace made visible
        var b = el('button', {'data-choice': String(t)}, shown);
        b.addEventListener('click', function () { showAnswer(t); });
        box.appendChild(b);
      });
      var links = $('answer-downloads');
      links.innerHTML = '';
      links.appendChild(download('HTML', 'relevancy-answer-' + data.method + '.html', data.html, 'text/html'));
      showAnswer('whole');
    }, function () {});
  }

  // -- 4. audit folders ------------------------------------------------------------------------------
  function openAudit() {
    var name = $('audit-folder').value;
    $('audit-word').innerHTML = '';
    if (!name) return Promise.resolve();
    return request('/api/audits/' + encodeURIComponent(name), {}, 'audit-error').then(function (html) {
      var view = $('audit-view');
      view.innerHTML = html;
      relevancyAudit(view);
    }, function () {});
  }
  function showAuditWord(event) {
    var name = $('audit-folder').value, word = event.detail;
    request('/api/audits/' + encodeURIComponent(name) + '/word?word=' + encodeURIComponent(word), {}, 'audit-error')
      .then(function (html) {
        var box = $('audit-word');
        box.innerHTML = '';
        var close = el('button', {'class': 'close'}, 'close');
        close.addEventListener('click', function () { box.innerHTML = ''; });
        box.appendChild(close);
        box.appendChild(el('h3', {}, 'Documents where \u201c' + word + '\u201d got the most relevance'));
        var docs = el('div');
        docs.innerHTML = html;  // rendered by the audit's own page code, escaped there
        box.appendChild(docs);
      }, function () {});
  }

  // -- 5. evaluation folders -------------------------------------------------------------------------
  function openEvaluation() {
    var name = $('evaluation-folder').value;
    if (!name) return Promise.resolve();
    return request('/api/evaluations/' + encodeURIComponent(name), {}, 'evaluation-error').then(function (data) {
      var view = $('evaluation-view');
      view.innerHTML = '';
      var results = data.results, table = el('table', {'class': 'results-table'});
      var head = el('tr');
      ['test', 'metric', ''].forEach(function (h) { head.appendChild(el('th', {'class': 't'}, h)); });
      results.methods.forEach(function (m) { head.appendChild(el('th', {}, m)); });
      table.appendChild(head);
      results.rows.forEach(function (row) {
        var tr = el('tr');
        tr.appendChild(el('td', {'class': 't'}, row.test));
        tr.appendChild(el('td', {'class': 't'}, row.metric));
        tr.appendChild(el('td', {'class': 't'}, row.higher_is_better ? '\u2191' : '\u2193'));
        var values = results.methods.map(function (m) { return row.values[m]; });
        var finite = values.filter(function (v) { return typeof v === 'number' && isFinite(v); });
        var best = finite.length ? (row.higher_is_better ? Math.max.apply(null, finite) : Math.min.apply(null, finite)) : null;
        values.forEach(function (v) {
          var known = typeof v === 'number' && isFinite(v);
          tr.appendChild(el('td', {'class': known && v === best ? 'best' : ''}, known ? v.toFixed(4) : '\u2013'));
        });
        table.appendChild(tr);
      });
      view.appendChild(table);
      view.appendChild(el('p', {'class': 'hint'}, '\u2191 higher is better, \u2193 lower is better; the best method of each row in bold.'));
      var notes = el('ul');
      Object.keys(results.notes || {}).forEach(function (k) {
        var v = results.notes[k];
        notes.appendChild(el('li', {}, k + ': ' + (typeof v === 'string' ? v : JSON.stringify(v))));
      });
      view.appendChild(notes);
      var plots = el('div', {'class': 'plots'});
      data.plots.forEach(function (file) {
        plots.appendChild(el('img', {src: '/api/evaluations/' + encodeURIComponent(name) + '/plots/' + encodeURIComponent(file), alt: file}));
      });
      view.appendChild(plots);
    }, function () {});
  }

  // -- start -----------------------------------------------------------------------------------------
  function showTab(name) {
    document.querySelectorAll('.tab').forEach(function (t) { t.classList.toggle('active', t.id === 'tab-' + name); });
    document.querySelectorAll('#tabs button').forEach(function (b) { b.classList.toggle('active', b.getAttribute('data-tab') === name); });
  }
  function folders(select, names) {
    option(select, '', names.length ? '(choose a folder)' : '(none given: start with --' + (select.id === 'audit-folder' ? 'audit' : 'evaluation') + ' DIR)');
    names.forEach(function (n) { option(select, n, n); });
  }

  fetch('/api/config').then(function (r) { return r.json(); }).then(function (c) {
    config = c;
    var available = {
      text: fillModels($('text-model'), 'text').length, image: fillModels($('image-model'), 'image').length,
      answer: fillModels($('answer-model'), 'answer').length, audit: c.audits.length, evaluation: c.evaluations.length
    };
    fillMethods($('text-methods'), 'text-method');
    fillMethods($('image-methods'), 'image-method');
    c.compared.concat(c.methods.filter(function (m) { return c.compared.indexOf(m) < 0; }))
      .forEach(function (m) { option($('answer-method'), m, m); });
    $('new-tokens').max = c.limits.new_tokens;
    fillTargets(modelInfo($('text-model').value), $('text-target'), $('text-contrast'));
    fillTargets(modelInfo($('image-model').value), $('image-target'), $('image-contrast'));
    folders($('audit-folder'), c.audits);
    folders($('evaluation-folder'), c.evaluations);
    var missing = {
      text: 'no text classifier is served: start relevancy serve --model NAME_OR_PATH',
      image: 'no image classifier is served: start relevancy serve --model NAME_OR_PATH (default-image: the embedded one)',
      answer: 'no causal language model is served: start relevancy serve --model NAME_OR_PATH (a folder, a hub name or a .gguf file)'
    };
    Object.keys(missing).forEach(function (kind) {
      if (!available[kind]) {
        $(kind + '-error').textContent = missing[kind];
        $(kind === 'text' ? 'explain-text' : kind === 'image' ? 'explain-image' : 'explain-answer').disabled = true;
      }
    });
    document.querySelectorAll('#tabs button').forEach(function (b) {
      var tab = b.getAttribute('data-tab');
      if (!available[tab]) b.title = 'nothing to show: start relevancy serve with a model or folder of this kind';
      b.addEventListener('click', function () { showTab(tab); });
    });
    showTab(['text', 'image', 'answer', 'audit', 'evaluation'].filter(function (t) { return available[t]; })[0] || 'text');
    document.body.setAttribute('data-ready', 'true');
  });

  $('text-model').addEventListener('change', function () {
    last.text = null;
    fillTargets(modelInfo(this.value), $('text-target'), $('text-contrast'));
  });
  $('image-model').addEventListener('change', function () {
    last.image = null;
    fillTargets(modelInfo(this.value), $('image-target'), $('image-contrast'));
  });
  $('explain-text').addEventListener('click', explainText);
  $('view-words').addEventListener('change', renderText);
  $('view-tokens').addEventListener('change', renderText);
  hover($('text-results'), 'text-hover');
  $('explain-image').addEventListener('click', explainImage);
  $('opacity').addEventListener('input', applyOpacity);
  $('explain-answer').addEventListener('click', explainAnswer);
  $('drop-sink').addEventListener('change', function () { showAnswer(last.answerChoice); });
  $('audit-folder').addEventListener('change', openAudit);
  $('audit-view').addEventListener('audit-word', showAuditWord);
  $('evaluation-folder').addEventListener('change', openEvaluation);
})();

// A tiny counter: enough script for the example to do something in a browser.
(function () {
  "use strict";
  var count = 0;
  var output = document.getElementById("count");
  var button = document.getElementById("add");
  function render() {
    output.textContent = String(count);
  }
  button.addEventListener("click", function () {
    count += 1;
    render();
  });
  render();
})();

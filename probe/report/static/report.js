// The report page's own script (inlined by probe/report/html.py): the verdict tabs select an
// article, mark the graphs that show it and show its windows on the Bokeh figures; links scroll.
(function(){
  function $$(sel){return Array.prototype.slice.call(document.querySelectorAll(sel));}
  function toggleWindows(id){
    var docs=(window.Bokeh&&window.Bokeh.documents)||[];
    docs.forEach(function(doc){
      doc.all_models.forEach(function(m){
        if(typeof m.name==="string"&&m.name.indexOf("windows:")===0){
          m.visible=m.name.split(":")[1]===id;
        }
      });
    });
  }
  function select(id){
    $$(".tab").forEach(function(t){t.setAttribute("aria-selected",String(t.dataset.verdict===id));});
    $$("article.verdict").forEach(function(a){a.hidden=a.dataset.verdict!==id;});
    var article=document.getElementById("verdict-"+id);
    var graphs=article?(article.dataset.graphs||"").split(" "):[];
    var isIssue=!!(article&&article.querySelector(".status.st-issue"));
    $$("section.graph").forEach(function(g){
      var shows=isIssue&&(g.dataset.verdicts||"").split(" ").indexOf(id)>=0;
      g.classList.toggle("marked",shows);
      $$("#"+g.id+" .mark").forEach(function(m){m.hidden=m.dataset.verdict!==id;});
    });
    toggleWindows(isIssue?id:"");
  }
  document.addEventListener("click",function(ev){
    var t=ev.target.closest("[data-verdict].tab,.verdict-link");
    if(t){ev.preventDefault();select(t.dataset.verdict);
      if(t.classList.contains("verdict-link")){document.getElementById("panel").scrollIntoView({behavior:"smooth"});}
      return;}
    var g=ev.target.closest(".graph-link");
    if(g){ev.preventDefault();var s=document.getElementById("graph-"+g.dataset.graph);
      if(s){s.scrollIntoView({behavior:"smooth",block:"start"});s.classList.remove("flash");
        void s.offsetWidth;s.classList.add("flash");}}
  });
})();

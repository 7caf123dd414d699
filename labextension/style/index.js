import 'uplot/dist/uPlot.min.css';
import './base.css';
import './page.css';
import './delivery.css';
